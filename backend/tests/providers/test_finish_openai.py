"""How an OpenAI answer ends, read by the official SDK and by our adapter from the same bytes.

Refusals (`message.refusal` / `delta.refusal` with content null), `content_filter`,
`length` with every token spent reasoning, a 200 whose body is `{"error": ...}`, and the
kinds of in-stream error frames.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from backend.providers.base import StreamEnd, TextDelta
from backend.providers.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from backend.providers.openai import OpenAIProvider
from backend.tests.fakes import openai_fake
from backend.tests.fakes.script import Script
from backend.tests.providers.test_openai_conformance import REQUEST, SDK_MESSAGES, adapter, sdk

REFUSAL = "I'm sorry, I can't help with that."


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def sdk_stream(client: openai.AsyncOpenAI) -> tuple[str, str, str | None, Any]:
    """(content, refusal, finish_reason, usage) as the SDK's stream delivers them."""
    stream = await client.chat.completions.create(
        model=REQUEST.model, messages=SDK_MESSAGES, stream=True,
        stream_options={"include_usage": True},
    )
    content, refusal, finish, usage = "", "", None, None
    async for chunk in stream:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            refusal += choice.delta.refusal or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    return content, refusal, finish, usage


async def ours_stream(p: OpenAIProvider) -> tuple[str, str, StreamEnd]:
    """(content, refusal, the end) as our adapter streams them."""
    content, refusal, end = "", "", None
    async for event in p.stream(REQUEST):
        if isinstance(event, TextDelta):
            if event.refusal:
                refusal += event.text
            else:
                content += event.text
        elif isinstance(event, StreamEnd):
            end = event
    assert end is not None
    return content, refusal, end


async def test_a_refusal_is_its_text_marked_as_refusal(session: aiohttp.ClientSession) -> None:
    async with openai_fake.start(Script(refusal=REFUSAL)) as (url, _), sdk(url) as client:
        theirs = await client.chat.completions.create(model=REQUEST.model, messages=SDK_MESSAGES)
        ours = await adapter(session, url).complete(REQUEST)
        sdk_content, sdk_refusal, sdk_finish, _ = await sdk_stream(client)
        content, refusal, end = await ours_stream(adapter(session, url))
    message = theirs.choices[0].message
    assert message.content is None and message.refusal == REFUSAL
    assert (ours.text, ours.refusal, ours.finish_reason) == (REFUSAL, True, "refusal")
    assert ours.native_finish == theirs.choices[0].finish_reason == "stop"
    # Streamed: `delta.refusal` pieces, no content; we relay them, marked.
    assert (sdk_content, sdk_refusal, sdk_finish) == ("", REFUSAL, "stop")
    assert (content, refusal) == ("", REFUSAL)
    assert (end.finish_reason, end.native_finish) == ("refusal", "stop")


@pytest.mark.parametrize(
    ("native", "ours_reason"), [("content_filter", "content_filter"), ("length", "length")]
)
async def test_an_empty_answer_says_why(
    session: aiohttp.ClientSession, native: str, ours_reason: str
) -> None:
    # `length` with every output token spent reasoning: the o-series' empty answer.
    script = Script(chunks=[], stop_reason=native, output_tokens=64, reasoning_tokens=64)
    async with openai_fake.start(script) as (url, _), sdk(url) as client:
        theirs = await client.chat.completions.create(model=REQUEST.model, messages=SDK_MESSAGES)
        ours = await adapter(session, url).complete(REQUEST)
        _, _, sdk_finish, sdk_usage = await sdk_stream(client)
        content, _, end = await ours_stream(adapter(session, url))
    assert theirs.choices[0].message.content is None and ours.text == ""
    assert theirs.choices[0].finish_reason == sdk_finish == native
    assert ours.finish_reason == end.finish_reason == ours_reason
    assert theirs.usage is not None and theirs.usage.completion_tokens_details is not None
    assert theirs.usage.completion_tokens_details.reasoning_tokens == 64
    assert ours.usage is not None and ours.usage.reasoning_tokens == 64
    assert content == "" and end.usage is not None and end.usage.reasoning_tokens == 64
    assert sdk_usage.completion_tokens_details.reasoning_tokens == 64


async def test_a_200_with_an_error_body_is_an_unbilled_failure(
    session: aiohttp.ClientSession,
) -> None:
    script = Script(error_with_200=True, error_message="upstream went away")
    async with openai_fake.start(script) as (url, state), sdk(url) as client:
        theirs = await client.chat.completions.create(model=REQUEST.model, messages=SDK_MESSAGES)
        with pytest.raises(ProviderUnavailable) as ours:
            await adapter(session, url).complete(REQUEST)
    # The SDK does not raise: it builds a ChatCompletion with no choices, which is no
    # answer at all (what the portal used to record as an empty success).
    assert not theirs.choices
    assert theirs.model_extra is not None and "error" in theirs.model_extra
    assert "upstream went away" in ours.value.message and ours.value.billed is False
    assert len(state.requests) == 2


IN_STREAM = [
    pytest.param("requests", "rate_limit_exceeded", ProviderRateLimited, id="rate-limit"),
    pytest.param("tokens", None, ProviderRateLimited, id="token-limit"),
    pytest.param("invalid_request_error", "context_length_exceeded", ProviderBadRequest,
                 id="bad-request"),
    pytest.param("invalid_request_error", "invalid_api_key", ProviderAuthError, id="auth"),
    pytest.param("server_error", None, ProviderUnavailable, id="server"),
    pytest.param(None, 429, ProviderRateLimited, id="numeric-code"),
]


@pytest.mark.parametrize(("kind", "code", "our_error"), IN_STREAM)
@pytest.mark.parametrize("after", [0, 1], ids=["before-text", "after-text"])
async def test_in_stream_error_kinds(
    session: aiohttp.ClientSession, kind: str | None, code: str | int | None,
    our_error: type[ProviderError], after: int,
) -> None:
    script = Script(
        stream_error_after=after, stream_error_kind=kind, stream_error_code=code,
        error_message="stopped",
    )
    async with openai_fake.start(script) as (url, _), sdk(url) as client:
        with pytest.raises(openai.APIError) as theirs:
            await sdk_stream(client)
        with pytest.raises(our_error) as ours:
            await ours_stream(adapter(session, url))
    assert theirs.value.message == "stopped"
    assert theirs.value.type == (kind or "server_error")
    assert theirs.value.code == (None if code is None else str(code))  # the SDK says str
    assert type(ours.value) is our_error
    # Nothing said before the error frame: the upstream refused before generating.
    assert ours.value.billed is (False if after == 0 else None)


async def test_reasoning_deltas_of_a_compatible_server_are_signs_of_life(
    session: aiohttp.ClientSession,
) -> None:
    script = Script(thinking=["Let me ", "think."], chunks=["Four."])
    async with openai_fake.start(script) as (url, _), sdk(url) as client:
        stream = await client.chat.completions.create(
            model=REQUEST.model, messages=SDK_MESSAGES, stream=True
        )
        reasoning = [
            (c.choices[0].delta.model_extra or {}).get("reasoning_content")
            async for c in stream if c.choices
        ]
        events = [event async for event in adapter(session, url).stream(REQUEST)]
    # The SDK keeps the unknown field as an extra; we count it as life and show nothing.
    assert [r for r in reasoning if r] == ["Let me ", "think."]
    assert [type(e).__name__ for e in events] == ["Thinking", "Thinking", "TextDelta",
                                                  "StreamEnd"]
