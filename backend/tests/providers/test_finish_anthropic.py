"""How an Anthropic answer ends, read by the official SDK and by our adapter from the same bytes.

`stop_reason: "refusal"` with and without text before it, `max_tokens`, cache writes split
by lifetime (and their price), text already in `content_block_start`, a 200 whose body is
an error object, and `retry-after` on a 529.
"""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from backend.config.pricing import PriceBook
from backend.providers.anthropic import AnthropicProvider
from backend.providers.base import StreamEnd, TextDelta, Usage
from backend.providers.errors import ProviderUnavailable
from backend.tests.fakes.script import Script
from backend.tests.providers.test_anthropic_conformance import REQUEST, SDK_ARGS, both


async def sdk_final(sdk: anthropic.AsyncAnthropic) -> Any:
    """The SDK stream's accumulated final message."""
    async with sdk.messages.stream(**SDK_ARGS) as stream:
        return await stream.get_final_message()


async def ours_stream(ours: AnthropicProvider) -> tuple[str, StreamEnd]:
    text, end = "", None
    async for event in ours.stream(REQUEST):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, StreamEnd):
            end = event
    assert end is not None
    return text, end


def sdk_text(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


@pytest.mark.parametrize(
    ("chunks", "native", "reason"),
    [
        ([], "refusal", "refusal"),
        (["Here is how ", "to"], "refusal", "refusal"),  # refused part-way: text stays
        (["The first half"], "max_tokens", "length"),
        ([], "max_tokens", "length"),
        (["Done."], "stop_sequence", "stop"),
    ],
    ids=["refusal-no-text", "refusal-after-text", "truncated", "no-text-at-limit", "stop-seq"],
)
async def test_stop_reasons_in_both_modes(chunks: list[str], native: str, reason: str) -> None:
    async with both(Script(chunks=chunks, stop_reason=native)) as (sdk, ours, _):
        message = await sdk.messages.create(**SDK_ARGS)
        completion = await ours.complete(REQUEST)
        final = await sdk_final(sdk)
        text, end = await ours_stream(ours)
    assert message.stop_reason == final.stop_reason == native
    assert completion.text == sdk_text(message) == text == sdk_text(final) == "".join(chunks)
    assert (completion.finish_reason, completion.native_finish) == (reason, native)
    assert (end.finish_reason, end.native_finish) == (reason, native)


async def test_cache_writes_keep_their_lifetime_split_and_price() -> None:
    script = Script(input_tokens=3000, cached_input_tokens=500, cache_write_5m=600,
                    cache_write_1h=1200, output_tokens=10)
    async with both(script) as (sdk, ours, _):
        message = await sdk.messages.create(**SDK_ARGS)
        completion = await ours.complete(REQUEST)
        final = await sdk_final(sdk)
        _, end = await ours_stream(ours)
    split = message.usage.cache_creation
    assert split is not None and final.usage.cache_creation is not None
    assert (split.ephemeral_5m_input_tokens, split.ephemeral_1h_input_tokens) == (600, 1200)
    assert message.usage.cache_creation_input_tokens == 1800
    expected = Usage(
        input_tokens=3000, output_tokens=10, cached_input_tokens=500,
        cache_write_tokens=1800, cache_write_1h_tokens=1200,
    )
    assert completion.usage == end.usage == expected
    # Priced as genai-prices prices the same counts: above the plain input rate.
    book = PriceBook({})
    cost = book.estimate("anthropic", "claude-sonnet-4-5", expected)
    reference = calc_price(
        PriceUsage(input_tokens=3000, output_tokens=10, cache_read_tokens=500,
                   cache_write_tokens=1800, cache_write_1h_tokens=1200),
        model_ref="claude-sonnet-4-5", provider_id="anthropic",
    )
    assert cost == pytest.approx(float(reference.total_price))
    flat = book.estimate(
        "anthropic", "claude-sonnet-4-5", Usage(3000, 10, cached_input_tokens=500)
    )
    assert cost is not None and flat is not None and cost > flat * 1.2


async def test_text_in_content_block_start_is_kept() -> None:
    script = Script(chunks=["Hello", " there"], text_in_block_start=True)
    async with both(script) as (sdk, ours, _):
        final = await sdk_final(sdk)
        text, _ = await ours_stream(ours)
    assert sdk_text(final) == text == "Hello there"


async def test_a_200_with_an_error_body_is_an_unbilled_failure() -> None:
    script = Script(error_with_200=True, stream_error_kind="overloaded_error",
                    error_message="Overloaded")
    async with both(script) as (sdk, ours, _):
        theirs = await sdk.messages.create(**SDK_ARGS)
        with pytest.raises(ProviderUnavailable) as raised:
            await ours.complete(REQUEST)
    # The SDK builds a Message without content from it: no answer, and no exception.
    assert theirs.type == "error" and not theirs.content
    assert raised.value.billed is False and "Overloaded" in raised.value.message


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
async def test_retry_after_on_a_529_is_read(streaming: bool) -> None:
    script = Script(error_status=529, retry_after="3", error_message="Overloaded")
    async with both(script) as (sdk, ours, _):
        with pytest.raises(anthropic.APIStatusError) as theirs:
            await sdk.messages.create(**SDK_ARGS)
        with pytest.raises(ProviderUnavailable) as raised:
            if streaming:
                await ours_stream(ours)
            else:
                await ours.complete(REQUEST)
    assert theirs.value.status_code == raised.value.status == 529
    assert theirs.value.response.headers["retry-after"] == "3"
    assert raised.value.retry_after == 3.0 and raised.value.billed is False


async def test_thinking_deltas_are_signs_of_life_not_text() -> None:
    script = Script(chunks=["Four."], thinking=["Two plus ", "two is four."])
    async with both(script) as (sdk, ours, _):
        final = await sdk_final(sdk)
        events = [event async for event in ours.stream(REQUEST)]
    thinking = [b for b in final.content if b.type == "thinking"]
    assert thinking and thinking[0].thinking == "Two plus two is four."
    assert sdk_text(final) == "Four."
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Thinking", "Thinking", "TextDelta", "StreamEnd"]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Four."
