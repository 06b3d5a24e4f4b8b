"""The Anthropic adapter against a fake of the Messages API's real wire format."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from backend.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicProvider, _UsageTally
from backend.providers.base import (
    Completion,
    CompletionRequest,
    Message,
    StreamEnd,
    TextDelta,
    Usage,
)
from backend.providers.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderStreamCut,
    ProviderTimeout,
    ProviderUnavailable,
)
from backend.providers.http import Timeouts
from backend.tests.fakes.anthropic_fake import API_KEY, start
from backend.tests.fakes.script import FakeState, Script

REQUEST = CompletionRequest(
    model="claude-test-1",
    messages=(
        Message("user", "first question"),
        Message("assistant", "first answer"),
        Message("user", "second question"),
    ),
    system="You are terse.",
)
FAST = Timeouts(connect=1.0, total=10.0)


@asynccontextmanager
async def provider(
    script: Script | None = None,
    *,
    key: str = API_KEY,
    timeouts: Timeouts = FAST,
    **fake_options: Any,
) -> AsyncIterator[tuple[AnthropicProvider, FakeState]]:
    """A provider wired to a fresh fake, with its own session."""
    async with start(script, **fake_options) as (base_url, state), aiohttp.ClientSession() as s:
        yield AnthropicProvider(
            s, base_url=base_url, api_key=key, api_version="2023-06-01", timeouts=timeouts
        ), state


async def collect(p: AnthropicProvider, request: CompletionRequest = REQUEST) -> list[Any]:
    """Every event of one stream."""
    return [event async for event in p.stream(request)]


# --- text and usage ---------------------------------------------------------------------


async def test_complete_reads_text_usage_model_and_stop_reason() -> None:
    script = Script(chunks=["Bonjour", ", monde"], input_tokens=40, output_tokens=9,
                    cached_input_tokens=15, model="claude-answered-1")
    async with provider(script) as (p, _):
        result = await p.complete(REQUEST)
    assert result == Completion(
        text="Bonjour, monde",
        model="claude-answered-1",
        # Anthropic reports 25 uncached + 15 cache-read; ours counts all 40 as input.
        usage=Usage(input_tokens=40, output_tokens=9, cached_input_tokens=15),
        finish_reason="stop", native_finish="end_turn",
    )


@pytest.mark.parametrize("delta_input_usage", [True, False])
async def test_stream_relays_deltas_and_ends_with_cumulative_usage(
    delta_input_usage: bool,
) -> None:
    # message_start says output_tokens=1 (a placeholder); message_delta says 9 in total.
    # Summing would give 10; the delta may or may not repeat the input counts.
    script = Script(chunks=["a", "b", "c"], input_tokens=30, output_tokens=9,
                    cached_input_tokens=4)
    async with provider(script, delta_input_usage=delta_input_usage) as (p, _):
        events = await collect(p)
    assert events == [
        TextDelta("a"), TextDelta("b"), TextDelta("c"),
        StreamEnd(
            model="claude-test-1",
            usage=Usage(input_tokens=30, output_tokens=9, cached_input_tokens=4),
            finish_reason="stop", native_finish="end_turn",
        ),
    ]


async def test_message_delta_counts_replace_message_start_counts() -> None:
    # The tally behind both modes: a later report wins field by field; absent fields stay.
    tally = _UsageTally()
    tally.update({"input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 1})
    tally.update({"output_tokens": 20})
    assert tally.result() == Usage(input_tokens=7, output_tokens=20, cached_input_tokens=2)
    tally.update({"input_tokens": 6, "cache_creation_input_tokens": 3, "output_tokens": 25})
    assert tally.result() == Usage(
        input_tokens=11, output_tokens=25, cached_input_tokens=2, cache_write_tokens=3
    )


async def test_missing_usage_is_none_not_zero() -> None:
    async with provider(Script(omit_usage=True)) as (p, _):
        completion = await p.complete(REQUEST)
        events = await collect(p)
    assert completion.usage is None
    assert events[-1] == StreamEnd(model="claude-test-1", usage=None, finish_reason="stop",
                                   native_finish="end_turn")


# --- what reached upstream --------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
async def test_request_wire_format(streaming: bool) -> None:
    request = CompletionRequest(
        model="claude-test-1", messages=REQUEST.messages, system="Be brief.",
        temperature=0.25, max_output_tokens=321,
    )
    async with provider() as (p, state):
        if streaming:
            await collect(p, request)
        else:
            await p.complete(request)
    [sent] = state.requests
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    expected: dict[str, Any] = {
        "model": "claude-test-1",
        "max_tokens": 321,
        "system": "Be brief.",
        "temperature": 0.25,
        "messages": [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
        ],
    }
    if streaming:
        expected["stream"] = True
    assert sent.json == expected


async def test_max_tokens_always_sent_and_unset_fields_omitted() -> None:
    request = CompletionRequest(model="claude-test-1", messages=(Message("user", "hi"),))
    async with provider() as (p, state):
        await p.complete(request)
    assert state.requests[0].json == {
        "model": "claude-test-1",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": "hi"}],
    }


async def test_base_url_trailing_slash_is_tolerated() -> None:
    async with start() as (base_url, state), aiohttp.ClientSession() as session:
        p = AnthropicProvider(session, base_url=base_url + "/", api_key=API_KEY,
                              api_version="2023-06-01", timeouts=FAST)
        await p.complete(REQUEST)
    assert state.requests[0].path == "/v1/messages"


# --- errors -----------------------------------------------------------------------------

Call = Callable[[AnthropicProvider], Any]


async def _complete(p: AnthropicProvider) -> Any:
    return await p.complete(REQUEST)


async def _stream(p: AnthropicProvider) -> Any:
    return await collect(p)


BOTH_MODES = pytest.mark.parametrize("call", [_complete, _stream], ids=["complete", "stream"])


def _assert_safe(exc: ProviderError, *secrets: str) -> None:
    assert exc.provider == "anthropic"
    for secret in (API_KEY, *secrets):
        assert secret not in str(exc)


@BOTH_MODES
async def test_wrong_key_is_an_auth_error_that_does_not_repeat_the_key(call: Call) -> None:
    wrong = "sk-ant-api03-not-the-right-key"
    async with provider(key=wrong) as (p, _):
        with pytest.raises(ProviderAuthError) as info:
            await call(p)
    assert info.value.status == 401
    _assert_safe(info.value, wrong)


@BOTH_MODES
@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, ProviderBadRequest),
        (403, ProviderAuthError),
        (404, ProviderBadRequest),
        (500, ProviderUnavailable),
        (503, ProviderUnavailable),
        (529, ProviderUnavailable),
    ],
)
async def test_http_status_maps_to_error_class(
    call: Call, status: int, error_class: type[ProviderError]
) -> None:
    script = Script(error_status=status, error_message="upstream says no")
    async with provider(script) as (p, _):
        with pytest.raises(error_class) as info:
            await call(p)
    assert type(info.value) is error_class
    assert info.value.status == status
    _assert_safe(info.value)


@BOTH_MODES
async def test_rate_limit_carries_retry_after(call: Call) -> None:
    script = Script(error_status=429, retry_after="17", error_message="slow down")
    async with provider(script) as (p, _):
        with pytest.raises(ProviderRateLimited) as info:
            await call(p)
    assert info.value.retry_after == 17.0
    assert "slow down" in str(info.value)
    _assert_safe(info.value)


async def test_upstream_message_is_repeated_without_key_shaped_text() -> None:
    script = Script(error_status=400, error_message="bad field, key sk-ant-api03-leak")
    async with provider(script) as (p, _):
        with pytest.raises(ProviderBadRequest) as info:
            await p.complete(REQUEST)
    assert "bad field" in str(info.value)
    assert "sk-ant-api03-leak" not in str(info.value)


@pytest.mark.parametrize(
    ("error_type", "error_class"),
    [
        ("overloaded_error", ProviderUnavailable),
        ("api_error", ProviderUnavailable),
        ("rate_limit_error", ProviderRateLimited),
        ("authentication_error", ProviderAuthError),
        ("invalid_request_error", ProviderBadRequest),
        ("timeout_error", ProviderTimeout),
        ("some_future_error", ProviderUnavailable),
    ],
)
async def test_in_stream_error_event_maps_by_type(
    error_type: str, error_class: type[ProviderError]
) -> None:
    script = Script(stream_error_after=1, error_message="Overloaded")
    received: list[Any] = []
    async with provider(script, stream_error_type=error_type) as (p, _):
        with pytest.raises(error_class) as info:
            async for event in p.stream(REQUEST):
                received.append(event)
    assert type(info.value) is error_class
    assert received == [TextDelta("Hello")]  # text before the error was relayed
    assert error_type in str(info.value)
    _assert_safe(info.value)


@BOTH_MODES
async def test_cut_connection_is_a_stream_cut_chained_to_the_transport_error(
    call: Call,
) -> None:
    async with provider(Script(cut_after_chunks=1)) as (p, _):
        with pytest.raises(ProviderStreamCut) as info:
            await call(p)
    assert isinstance(info.value.__cause__, aiohttp.ClientPayloadError)
    _assert_safe(info.value)


async def test_stream_without_message_stop_is_cut_even_with_usage() -> None:
    received: list[Any] = []
    async with provider(Script(omit_terminal=True)) as (p, _):
        with pytest.raises(ProviderStreamCut, match="message_stop"):
            async for event in p.stream(REQUEST):
                received.append(event)
    assert all(isinstance(e, TextDelta) for e in received)
    assert len(received) == 3


@BOTH_MODES
async def test_slow_first_byte_times_out(call: Call) -> None:
    tight = Timeouts(connect=1.0, total=5.0, idle=0.2)
    async with provider(Script(first_byte_delay=1.0), timeouts=tight) as (p, _):
        with pytest.raises(ProviderTimeout) as info:
            await call(p)
    assert isinstance(info.value.__cause__, asyncio.TimeoutError)


async def test_silence_between_chunks_times_out() -> None:
    tight = Timeouts(connect=1.0, total=5.0, idle=0.2)
    async with provider(Script(chunk_delay=1.0), timeouts=tight) as (p, _):
        with pytest.raises(ProviderTimeout) as info:
            await collect(p)
    assert isinstance(info.value.__cause__, asyncio.TimeoutError)


async def test_closing_the_stream_early_hangs_up_on_upstream() -> None:
    async with provider(Script(chunks=["x"] * 20, chunk_delay=0.05)) as (p, state):
        events = p.stream(REQUEST)
        assert await anext(events) == TextDelta("x")
        await events.aclose()
        for _ in range(100):
            if state.disconnects:
                break
            await asyncio.sleep(0.02)
        assert state.disconnects == 1
        assert state.open_responses == 0


async def test_fail_times_then_success() -> None:
    # An overloaded upstream that recovers: the first call fails, the retry succeeds.
    async with provider(Script(error_status=529, fail_times=1)) as (p, state):
        with pytest.raises(ProviderUnavailable):
            await p.complete(REQUEST)
        result = await p.complete(REQUEST)
    assert result.text == "Hello from the fake"
    assert len(state.requests) == 2
