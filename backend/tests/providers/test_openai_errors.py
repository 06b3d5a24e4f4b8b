"""The real OpenAIProvider against the fake: every HTTP error and stream fault, mapped."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from backend.providers.base import StreamEvent, TextDelta
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
from backend.tests.fakes import openai_fake
from backend.tests.fakes.script import Script
from backend.tests.fakes.server import serve
from backend.tests.providers.test_openai import BOTH_MODES, REQUEST, consume, provider, run

FAST = Timeouts(connect=1.0, total=5.0, idle=0.2)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


# --- HTTP errors ---------------------------------------------------------------------------


@BOTH_MODES
async def test_wrong_key_is_auth_error_without_the_echoed_key(
    session: aiohttp.ClientSession, streaming: bool,
) -> None:
    wrong = "sk-proj-AbCdEfGh1234567890wxyz"
    async with openai_fake.start() as (url, _):
        with pytest.raises(ProviderAuthError) as caught:
            await run(provider(session, url, api_key=wrong), streaming)
    message = str(caught.value)
    assert caught.value.status == 401 and caught.value.provider == "openai"
    # OpenAI's 401 echoes the key as "sk-proj-***...wxyz"; none of it may reach our message.
    assert openai_fake.mask_key(wrong) not in message
    assert "sk-proj" not in message and "wxyz" not in message and wrong not in message


async def test_missing_key_is_auth_error(session: aiohttp.ClientSession) -> None:
    async with openai_fake.start() as (url, _):
        with pytest.raises(ProviderAuthError):
            await provider(session, url, api_key=None).complete(REQUEST)


@BOTH_MODES
@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, ProviderBadRequest), (404, ProviderBadRequest), (500, ProviderUnavailable),
     (503, ProviderUnavailable), (401, ProviderAuthError)],
)
async def test_status_maps_to_error_kind(
    session: aiohttp.ClientSession, streaming: bool, status: int, error_type: type[ProviderError],
) -> None:
    script = Script(error_status=status, error_message="the upstream said no")
    async with openai_fake.start(script) as (url, _):
        with pytest.raises(error_type) as caught:
            await run(provider(session, url), streaming)
    assert type(caught.value) is error_type and caught.value.status == status
    if status != 401:
        assert "the upstream said no" in str(caught.value)


@BOTH_MODES
async def test_rate_limit_carries_retry_after(
    session: aiohttp.ClientSession, streaming: bool,
) -> None:
    script = Script(error_status=429, retry_after="7", error_message="Rate limit reached")
    async with openai_fake.start(script) as (url, _):
        with pytest.raises(ProviderRateLimited) as caught:
            await run(provider(session, url), streaming)
    assert caught.value.retry_after == 7.0 and caught.value.status == 429


async def test_rate_limit_without_hint_has_no_retry_after(session: aiohttp.ClientSession) -> None:
    async with openai_fake.start(Script(error_status=429)) as (url, _):
        with pytest.raises(ProviderRateLimited) as caught:
            await provider(session, url).complete(REQUEST)
    assert caught.value.retry_after is None


async def test_keys_in_upstream_messages_are_redacted(session: aiohttp.ClientSession) -> None:
    script = Script(error_status=400, error_message="bad key sk-live-SECRET123 in body")
    async with openai_fake.start(script) as (url, _):
        with pytest.raises(ProviderBadRequest) as caught:
            await provider(session, url).complete(REQUEST)
    assert "SECRET123" not in str(caught.value) and "[redacted]" in str(caught.value)


async def test_failure_then_recovery_with_fail_times(session: aiohttp.ClientSession) -> None:
    async with openai_fake.start(Script(error_status=503, fail_times=1)) as (url, state):
        p = provider(session, url)
        with pytest.raises(ProviderUnavailable):
            await p.complete(REQUEST)
        assert (await p.complete(REQUEST)).text == "Hello from the fake"
    assert state.failures_served == 1 and len(state.requests) == 2


# --- stream faults ---------------------------------------------------------------------------


async def test_in_stream_error_frame_after_some_text(session: aiohttp.ClientSession) -> None:
    script = Script(stream_error_after=2, error_message="The server had an error")
    seen: list[StreamEvent] = []
    async with openai_fake.start(script) as (url, _):
        with pytest.raises(ProviderUnavailable) as caught:
            await consume(provider(session, url), seen)
    assert seen == [TextDelta("Hello"), TextDelta(" from")]
    assert "The server had an error" in str(caught.value)


async def test_cut_stream_is_stream_cut_with_cause(session: aiohttp.ClientSession) -> None:
    seen: list[StreamEvent] = []
    async with openai_fake.start(Script(cut_after_chunks=1)) as (url, _):
        with pytest.raises(ProviderStreamCut) as caught:
            await consume(provider(session, url), seen)
    assert seen == [TextDelta("Hello")]
    assert isinstance(caught.value.__cause__, aiohttp.ClientPayloadError)


async def test_cut_json_body_is_stream_cut_with_cause(session: aiohttp.ClientSession) -> None:
    async with openai_fake.start(Script(cut_after_chunks=0)) as (url, _):
        with pytest.raises(ProviderStreamCut) as caught:
            await provider(session, url).complete(REQUEST)
    assert isinstance(caught.value.__cause__, aiohttp.ClientPayloadError)


async def test_stream_without_done_is_stream_cut(session: aiohttp.ClientSession) -> None:
    seen: list[StreamEvent] = []
    async with openai_fake.start(Script(omit_terminal=True)) as (url, _):
        with pytest.raises(ProviderStreamCut):
            await consume(provider(session, url), seen)
    # All the text arrived; only the terminal [DONE] was missing, and no StreamEnd was made up.
    assert seen == [TextDelta("Hello"), TextDelta(" from"), TextDelta(" the fake")]


@BOTH_MODES
async def test_first_byte_timeout(session: aiohttp.ClientSession, streaming: bool) -> None:
    async with openai_fake.start(Script(first_byte_delay=1.0)) as (url, _):
        with pytest.raises(ProviderTimeout) as caught:
            await run(provider(session, url, timeouts=FAST), streaming)
    assert isinstance(caught.value.__cause__, asyncio.TimeoutError)


async def test_silence_between_chunks_times_out(session: aiohttp.ClientSession) -> None:
    seen: list[StreamEvent] = []
    async with openai_fake.start(Script(chunk_delay=0.5)) as (url, _):
        with pytest.raises(ProviderTimeout) as caught:
            await consume(provider(session, url, timeouts=FAST), seen)
    assert isinstance(caught.value.__cause__, asyncio.TimeoutError)


@BOTH_MODES
async def test_connection_refused_is_unavailable(
    session: aiohttp.ClientSession, streaming: bool,
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    p = provider(session, f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ProviderUnavailable) as caught:
        await run(p, streaming)
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)


async def test_abandoned_stream_is_seen_as_a_disconnect(session: aiohttp.ClientSession) -> None:
    async with openai_fake.start(Script(chunks=["a"] * 50, chunk_delay=0.01)) as (url, state):
        stream = provider(session, url).stream(REQUEST)
        assert await anext(stream) == TextDelta("a")
        await stream.aclose()  # type: ignore[attr-defined]
        for _ in range(100):
            if state.open_responses == 0:
                break
            await asyncio.sleep(0.01)
    assert state.disconnects == 1 and state.open_responses == 0


async def test_a_frame_that_is_not_json_is_a_stream_cut(session: aiohttp.ClientSession) -> None:
    """An OpenAI-compatible server or proxy may garble a frame; it must not escape our tree."""

    async def garbled(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"delta": {"content": "ok"}}]}\n\n')
        await response.write(b"data: <html>502 Bad Gateway</html>\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", garbled)
    seen: list[StreamEvent] = []
    async with serve(app) as base:
        with pytest.raises(ProviderStreamCut) as caught:
            await consume(provider(session, f"{base}/v1"), seen)
    assert seen == [TextDelta("ok")]
    assert isinstance(caught.value.__cause__, orjson.JSONDecodeError)
