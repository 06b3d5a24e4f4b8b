"""The official `anthropic` SDK and our adapter, driven against the same fake, must agree.

If the SDK reads the fake as it reads the real API, the fake is faithful; if our adapter
reads the same things from it, the adapter speaks the real wire format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anthropic
import httpx2
import pytest

from backend.providers.anthropic import AnthropicProvider
from backend.providers.base import CompletionRequest, Message, StreamEnd, TextDelta
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

MODEL = "claude-test-1"
SYSTEM = "Answer in one line."
MESSAGES = (Message("user", "hi"), Message("assistant", "hello"), Message("user", "and?"))
REQUEST = CompletionRequest(
    model=MODEL, messages=MESSAGES, system=SYSTEM, temperature=0.5, max_output_tokens=64
)
SDK_ARGS: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 64,
    "system": SYSTEM,
    # anthropic 2.x dropped `temperature` from `messages.create` (the SDK pins API version
    # 2026-10-21); the 2023-06-01 version we pin still documents it, so it goes as extra body.
    "extra_body": {"temperature": 0.5},
    "messages": [{"role": m.role, "content": m.content} for m in MESSAGES],
}

# How an SDK exception class corresponds to ours. Order matters: subclasses first.
SDK_TO_OURS: list[tuple[type[Exception], type[ProviderError]]] = [
    (anthropic.AuthenticationError, ProviderAuthError),
    (anthropic.PermissionDeniedError, ProviderAuthError),
    (anthropic.RateLimitError, ProviderRateLimited),
    (anthropic.BadRequestError, ProviderBadRequest),
    (anthropic.NotFoundError, ProviderBadRequest),
    (anthropic.InternalServerError, ProviderUnavailable),  # 5xx, 503 and 529 included
]


def ours_for(sdk_error: Exception) -> type[ProviderError]:
    """Our error class for an SDK exception."""
    for sdk_class, ours in SDK_TO_OURS:
        if isinstance(sdk_error, sdk_class):
            return ours
    raise AssertionError(f"no mapping for {type(sdk_error).__name__}")


@asynccontextmanager
async def both(
    script: Script | None = None, *, key: str = API_KEY, **fake_options: Any
) -> AsyncIterator[tuple[anthropic.AsyncAnthropic, AnthropicProvider, FakeState]]:
    """The SDK client and our provider, pointed at one fake."""
    async with start(script, **fake_options) as (base_url, state):
        sdk = anthropic.AsyncAnthropic(api_key=key, base_url=base_url, max_retries=0)
        async with sdk, aiohttp.ClientSession() as session:
            ours = AnthropicProvider(
                session, base_url=base_url, api_key=key, api_version="2023-06-01",
                timeouts=Timeouts(connect=1.0, total=10.0),
            )
            yield sdk, ours, state


async def test_non_streaming_reads_agree() -> None:
    script = Script(chunks=["The ", "answer"], input_tokens=50, output_tokens=12,
                    cached_input_tokens=20, model="claude-answered-2")
    async with both(script) as (sdk, ours, _):
        message = await sdk.messages.create(**SDK_ARGS)
        completion = await ours.complete(REQUEST)
    sdk_text = "".join(b.text for b in message.content if b.type == "text")
    assert completion.text == sdk_text == "The answer"
    assert completion.model == message.model == "claude-answered-2"
    assert completion.native_finish == message.stop_reason == "end_turn"
    assert completion.finish_reason == "stop"
    assert message.id.startswith("msg_") and message.role == "assistant"
    _assert_usage_agrees(completion.usage, message.usage)


@pytest.mark.parametrize("delta_input_usage", [True, False])
async def test_streaming_reads_agree(delta_input_usage: bool) -> None:
    script = Script(chunks=["one", " two", " three"], input_tokens=33, output_tokens=21,
                    cached_input_tokens=8)
    async with both(script, delta_input_usage=delta_input_usage) as (sdk, ours, _):
        async with sdk.messages.stream(**SDK_ARGS) as stream:
            sdk_deltas = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
            request_id = stream.request_id
        events = [event async for event in ours.stream(REQUEST)]
    assert request_id is not None and request_id.startswith("req_")
    assert [e.text for e in events if isinstance(e, TextDelta)] == sdk_deltas
    assert sdk_deltas == ["one", " two", " three"]
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.model == final.model == MODEL
    assert end.native_finish == final.stop_reason == "end_turn"
    assert end.finish_reason == "stop"
    _assert_usage_agrees(end.usage, final.usage)


def _assert_usage_agrees(ours: Any, sdk_usage: anthropic.types.Usage) -> None:
    # The SDK exposes Anthropic's split; ours counts every input token (see anthropic.py).
    cache_read = sdk_usage.cache_read_input_tokens or 0
    cache_write = sdk_usage.cache_creation_input_tokens or 0
    assert ours.input_tokens == sdk_usage.input_tokens + cache_read + cache_write
    assert ours.cached_input_tokens == cache_read
    assert ours.output_tokens == sdk_usage.output_tokens


@pytest.mark.parametrize("streaming", [False, True])
async def test_request_bodies_agree(streaming: bool) -> None:
    async with both() as (sdk, ours, state):
        if streaming:
            async with sdk.messages.stream(**SDK_ARGS) as stream:
                await stream.get_final_message()
            [event async for event in ours.stream(REQUEST)]
        else:
            await sdk.messages.create(**SDK_ARGS)
            await ours.complete(REQUEST)
    sdk_sent, ours_sent = state.requests
    assert sdk_sent.path == ours_sent.path == "/v1/messages"
    assert sdk_sent.json == ours_sent.json
    assert "anthropic-version" in sdk_sent.headers and "anthropic-version" in ours_sent.headers


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, ProviderBadRequest),
        (403, ProviderAuthError),
        (404, ProviderBadRequest),
        (429, ProviderRateLimited),
        (500, ProviderUnavailable),
        (503, ProviderUnavailable),
        (529, ProviderUnavailable),
    ],
)
async def test_http_errors_agree(
    streaming: bool, status: int, expected: type[ProviderError]
) -> None:
    script = Script(error_status=status, retry_after="3", error_message="no can do")
    async with both(script) as (sdk, ours, _):
        sdk_error = await _sdk_error(sdk, streaming)
        our_error = await _our_error(ours, streaming)
    assert isinstance(sdk_error, anthropic.APIStatusError)
    assert sdk_error.status_code == our_error.status == status
    assert ours_for(sdk_error) is type(our_error) is expected
    if status == 529:
        assert isinstance(sdk_error, anthropic.OverloadedError)
    if expected is ProviderRateLimited:
        assert isinstance(our_error, ProviderRateLimited)
        assert our_error.retry_after == float(sdk_error.response.headers["retry-after"])


@pytest.mark.parametrize("streaming", [False, True])
async def test_wrong_key_errors_agree(streaming: bool) -> None:
    async with both(key="sk-ant-api03-wrong") as (sdk, ours, _):
        sdk_error = await _sdk_error(sdk, streaming)
        our_error = await _our_error(ours, streaming)
    assert isinstance(sdk_error, anthropic.AuthenticationError)
    assert isinstance(our_error, ProviderAuthError)
    assert sdk_error.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": sdk_error.request_id,
    }


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("overloaded_error", ProviderUnavailable),
        ("api_error", ProviderUnavailable),
        ("rate_limit_error", ProviderRateLimited),
        ("invalid_request_error", ProviderBadRequest),
        ("timeout_error", ProviderTimeout),
    ],
)
async def test_in_stream_error_events_agree(
    error_type: str, expected: type[ProviderError]
) -> None:
    # The SDK raises a status error (for the 200 it got) carrying the event's body.
    script = Script(stream_error_after=2, error_message="Overloaded")
    async with both(script, stream_error_type=error_type) as (sdk, ours, _):
        sdk_error = await _sdk_error(sdk, streaming=True)
        our_error = await _our_error(ours, streaming=True)
    assert isinstance(sdk_error, anthropic.APIStatusError)
    error = {"type": error_type, "message": "Overloaded"}
    assert sdk_error.body == {"type": "error", "error": error}
    assert type(our_error) is expected


@pytest.mark.parametrize("streaming", [False, True])
async def test_cut_connection_fails_both(streaming: bool) -> None:
    async with both(Script(cut_after_chunks=1)) as (sdk, ours, _):
        sdk_error = await _sdk_error(sdk, streaming)
        our_error = await _our_error(ours, streaming)
    # The SDK wraps transport errors as APIConnectionError before the body, not while streaming.
    assert isinstance(sdk_error, (anthropic.APIConnectionError, httpx2.RemoteProtocolError))
    assert isinstance(our_error, ProviderStreamCut)


async def test_missing_message_stop_sdk_tolerates_we_refuse() -> None:
    # A deliberate difference: the SDK keeps what it got; we cannot tell such a stream from
    # one cut after its usage was sent, so we report it and the caller decides.
    async with both(Script(omit_terminal=True)) as (sdk, ours, _):
        async with sdk.messages.stream(**SDK_ARGS) as stream:
            sdk_text = "".join([text async for text in stream.text_stream])
        our_error = await _our_error(ours, streaming=True)
    assert sdk_text == "Hello from the fake"
    assert isinstance(our_error, ProviderStreamCut)


async def _sdk_error(sdk: anthropic.AsyncAnthropic, streaming: bool) -> Exception:
    try:
        if streaming:
            async with sdk.messages.stream(**SDK_ARGS) as stream:
                await stream.get_final_message()
        else:
            await sdk.messages.create(**SDK_ARGS)
    except Exception as exc:
        return exc
    raise AssertionError("the SDK call succeeded")


async def _our_error(ours: AnthropicProvider, streaming: bool) -> ProviderError:
    try:
        if streaming:
            [event async for event in ours.stream(REQUEST)]
        else:
            await ours.complete(REQUEST)
    except ProviderError as exc:
        return exc
    raise AssertionError("our call succeeded")
