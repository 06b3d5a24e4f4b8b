"""The real GoogleProvider against the Gemini fake: text, usage, what went upstream, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import aiohttp
import pytest

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
from backend.providers.google import GoogleProvider
from backend.providers.http import Timeouts
from backend.tests.fakes.google_fake import API_KEY, GoogleScript, start
from backend.tests.fakes.script import Script

MODEL = "gemini-2.5-flash"
REQUEST = CompletionRequest(
    model=MODEL,
    messages=(Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Why?")),
    system="Answer briefly.",
    temperature=0.3,
    max_output_tokens=64,
)
# Shaped like a real Gemini key, so redaction and "never echoed" are both exercised.
WRONG_KEY = "AIzaSyD-wrongwrongwrongwrongwrongwrong"
TIMEOUTS = Timeouts(connect=2.0, total=10.0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def make(
    session: aiohttp.ClientSession, base_url: str, *, key: str = API_KEY,
    version: str = "v1beta", timeouts: Timeouts = TIMEOUTS,
) -> GoogleProvider:
    """A GoogleProvider pointed at the fake."""
    return GoogleProvider(
        session, base_url=base_url, api_key=key, api_version=version, timeouts=timeouts
    )


async def collect(
    provider: GoogleProvider, request: CompletionRequest = REQUEST
) -> tuple[list[str], StreamEnd]:
    """Drain a stream: its texts and its one StreamEnd."""
    texts: list[str] = []
    end: StreamEnd | None = None
    async for event in provider.stream(request):
        assert end is None, "nothing may follow StreamEnd"
        if isinstance(event, TextDelta):
            texts.append(event.text)
        elif isinstance(event, StreamEnd):
            end = event
    assert end is not None
    return texts, end


async def run(provider: GoogleProvider, mode: str) -> tuple[str, Usage | None, str | None, str]:
    """(text, usage, Google's finish reason, model) from either mode, to cover both."""
    if mode == "complete":
        result: Completion = await provider.complete(REQUEST)
        return result.text, result.usage, result.native_finish, result.model
    texts, end = await collect(provider)
    return "".join(texts), end.usage, end.native_finish, end.model


MODES = pytest.mark.parametrize("mode", ["complete", "stream"])


async def test_complete_reads_text_usage_model_and_finish(session: aiohttp.ClientSession) -> None:
    script = Script(cached_input_tokens=4, model="gemini-2.5-flash-001")
    async with start(script) as (url, _):
        result = await make(session, url).complete(REQUEST)
    assert result.text == "Hello from the fake"
    assert result.usage == Usage(input_tokens=11, output_tokens=7, cached_input_tokens=4)
    assert result.model == "gemini-2.5-flash-001"
    assert (result.finish_reason, result.native_finish) == ("stop", "STOP")


async def test_stream_relays_each_chunk_and_keeps_the_last_cumulative_usage(
    session: aiohttp.ClientSession,
) -> None:
    # The fake's running candidate counts are 2, 4, 7: adding them would give 13.
    async with start(Script(cached_input_tokens=3)) as (url, _):
        texts, end = await collect(make(session, url))
    assert texts == ["Hello", " from", " the fake"]
    assert end.usage == Usage(input_tokens=11, output_tokens=7, cached_input_tokens=3)
    assert end.model == MODEL
    assert (end.finish_reason, end.native_finish) == ("stop", "STOP")


@pytest.mark.parametrize(
    ("mode", "method", "query"),
    [("complete", "generateContent", {}), ("stream", "streamGenerateContent", {"alt": "sse"})],
)
async def test_what_reaches_upstream(
    session: aiohttp.ClientSession, mode: str, method: str, query: dict[str, str]
) -> None:
    async with start() as (url, state):
        await run(make(session, url), mode)
    (sent,) = state.requests
    assert sent.path == f"/v1beta/models/{MODEL}:{method}"
    assert sent.query == query  # never `key=`: it would land in access logs
    assert sent.headers["x-goog-api-key"] == API_KEY
    assert "authorization" not in sent.headers
    assert sent.json == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello!"}]},
            {"role": "user", "parts": [{"text": "Why?"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Answer briefly."}]},
        "generationConfig": {"temperature": 0.3, "maxOutputTokens": 64},
    }


async def test_optional_fields_are_left_out_and_version_and_resource_names_respected(
    session: aiohttp.ClientSession,
) -> None:
    bare = CompletionRequest(model="models/gemini-2.0-flash", messages=(Message("user", "Hi"),))
    async with start() as (url, state):
        await make(session, url + "/", version="v1").complete(bare)
    (sent,) = state.requests
    assert sent.path == "/v1/models/gemini-2.0-flash:generateContent"
    assert sent.json == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


@MODES
async def test_thought_parts_are_not_the_answer_but_their_tokens_are_output(
    session: aiohttp.ClientSession, mode: str
) -> None:
    script = GoogleScript(thoughts=["**Planning** the reply. "], thoughts_tokens=20)
    async with start(script) as (url, _):
        text, usage, _, _ = await run(make(session, url), mode)
    assert text == "Hello from the fake"
    assert usage == Usage(
        input_tokens=11, output_tokens=7 + 20, cached_input_tokens=0, reasoning_tokens=20
    )


@MODES
async def test_missing_usage_is_none_not_zero(session: aiohttp.ClientSession, mode: str) -> None:
    async with start(Script(omit_usage=True)) as (url, _):
        text, usage, finish, _ = await run(make(session, url), mode)
    assert (text, usage, finish) == ("Hello from the fake", None, "STOP")


@MODES
@pytest.mark.parametrize(
    "script",
    [
        GoogleScript(block_reason="PROHIBITED_CONTENT"),
        GoogleScript(chunks=[], finish_reason="SAFETY"),
    ],
    ids=["prompt-blocked", "answer-withheld"],
)
async def test_a_safety_block_is_an_empty_answer_with_its_reason(
    session: aiohttp.ClientSession, mode: str, script: GoogleScript
) -> None:
    async with start(script) as (url, _):
        text, usage, finish, _ = await run(make(session, url), mode)
    assert text == ""
    assert finish == (f"blockReason:{script.block_reason}" if script.block_reason else "SAFETY")
    assert usage is not None and usage.input_tokens == 11  # still billed, still recorded


def failing(status: int) -> Script:
    """A script whose every call answers `status` with a recognisable message."""
    return Script(error_status=status, error_message=f"scripted failure {status}")


ERROR_CASES: list[tuple[str, str, Script, type[ProviderError], int]] = [
    ("wrong-key", WRONG_KEY, Script(), ProviderAuthError, 400),  # Google's 400 API_KEY_INVALID
    ("no-key", "", Script(), ProviderAuthError, 403),  # Google's 403 "unregistered callers"
    ("401", API_KEY, failing(401), ProviderAuthError, 401),
    ("403", API_KEY, failing(403), ProviderAuthError, 403),
    ("400", API_KEY, failing(400), ProviderBadRequest, 400),
    ("404", API_KEY, failing(404), ProviderBadRequest, 404),
    ("500", API_KEY, failing(500), ProviderUnavailable, 500),
    ("503", API_KEY, failing(503), ProviderUnavailable, 503),
    ("504", API_KEY, failing(504), ProviderTimeout, 504),
]
CASE_IDS = [case[0] for case in ERROR_CASES]


@MODES
@pytest.mark.parametrize(
    ("key", "script", "kind", "status"), [case[1:] for case in ERROR_CASES], ids=CASE_IDS
)
async def test_http_errors_map_into_our_tree_without_the_key(
    session: aiohttp.ClientSession, mode: str, key: str, script: Script,
    kind: type[ProviderError], status: int,
) -> None:
    async with start(script) as (url, state):
        with pytest.raises(ProviderError) as caught:
            await run(make(session, url, key=key), mode)
    assert type(caught.value) is kind
    assert caught.value.status == status
    assert caught.value.provider == "google"
    assert len(state.requests) == 1  # the adapter never retries on its own
    for text in (str(caught.value), repr(caught.value), caught.value.message):
        assert WRONG_KEY not in text and API_KEY not in text
    if kind is ProviderUnavailable or kind is ProviderBadRequest:
        assert script.error_message in str(caught.value)


@MODES
@pytest.mark.parametrize(
    ("script", "retry_after"),
    [
        (Script(error_status=429, retry_after="7"), 7.0),  # header (the fake contract's form)
        (GoogleScript(error_status=429, retry_after="30", retry_after_header=False), 30.0),
        (GoogleScript(error_status=429, retry_after="1.5", retry_after_header=False), 1.5),
        (Script(error_status=429), None),
    ],
    ids=["header", "retry-info", "retry-info-fraction", "no-hint"],
)
async def test_rate_limit_carries_the_retry_hint(
    session: aiohttp.ClientSession, mode: str, script: Script, retry_after: float | None
) -> None:
    async with start(script) as (url, _):
        with pytest.raises(ProviderRateLimited) as caught:
            await run(make(session, url), mode)
    assert caught.value.retry_after == retry_after
    assert caught.value.status == 429


async def test_an_error_frame_inside_the_stream_is_raised_after_the_text_so_far(
    session: aiohttp.ClientSession,
) -> None:
    texts: list[str] = []
    script = Script(stream_error_after=2, error_message="the model hiccuped")
    async with start(script) as (url, _):
        with pytest.raises(ProviderUnavailable, match="the model hiccuped") as caught:
            async for event in make(session, url).stream(REQUEST):
                assert isinstance(event, TextDelta)
                texts.append(event.text)
    assert texts == ["Hello", " from"]
    assert caught.value.status == 500


@MODES
async def test_a_cut_connection_is_a_stream_cut(session: aiohttp.ClientSession, mode: str) -> None:
    texts: list[str] = []
    async with start(Script(cut_after_chunks=1)) as (url, _):
        provider = make(session, url)
        with pytest.raises(ProviderStreamCut):
            if mode == "complete":
                await provider.complete(REQUEST)
            else:
                async for event in provider.stream(REQUEST):
                    assert isinstance(event, TextDelta)
                    texts.append(event.text)
    assert texts == ([] if mode == "complete" else ["Hello"])


async def test_a_clean_end_without_finish_reason_is_a_stream_cut(
    session: aiohttp.ClientSession,
) -> None:
    texts: list[str] = []
    async with start(Script(omit_terminal=True)) as (url, _):
        with pytest.raises(ProviderStreamCut, match="finishReason"):
            async for event in make(session, url).stream(REQUEST):
                assert isinstance(event, TextDelta), "no StreamEnd for a truncated answer"
                texts.append(event.text)
    assert texts == ["Hello", " from", " the fake"]


@MODES
async def test_no_first_byte_within_the_idle_bound_is_a_timeout(
    session: aiohttp.ClientSession, mode: str
) -> None:
    timeouts = Timeouts(connect=1.0, total=10.0, idle=0.2)
    async with start(Script(first_byte_delay=1.0)) as (url, _):
        with pytest.raises(ProviderTimeout):
            await run(make(session, url, timeouts=timeouts), mode)


async def test_a_silent_gap_mid_stream_is_a_timeout(session: aiohttp.ClientSession) -> None:
    timeouts = Timeouts(connect=1.0, total=10.0, idle=0.2)
    texts: list[str] = []
    async with start(Script(chunk_delay=1.0)) as (url, _):
        with pytest.raises(ProviderTimeout):
            async for event in make(session, url, timeouts=timeouts).stream(REQUEST):
                assert isinstance(event, TextDelta)
                texts.append(event.text)
    assert texts == ["Hello"]


async def test_unreachable_upstream_is_unavailable(session: aiohttp.ClientSession) -> None:
    async with start() as (url, _):
        pass  # the port is free again once the fake stops
    with pytest.raises(ProviderUnavailable, match="could not reach google"):
        await make(session, url).complete(REQUEST)


async def test_fake_frames_end_in_crlf_and_count_a_client_that_goes_away(
    session: aiohttp.ClientSession,
) -> None:
    # The provider tests rely on the fake being the real shape; check the raw bytes once.
    path = f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    async with start() as (url, state):
        async with session.post(url + path, json=body, headers={"x-goog-api-key": API_KEY}) as r:
            raw = await r.read()
            assert r.headers["Content-Type"].startswith("text/event-stream")
        frames = raw.split(b"\r\n\r\n")
        assert frames[-1] == b"" and len(frames) == 4
        assert all(f.startswith(b'data: {"candidates"') for f in frames[:-1])
        assert b'"finishReason":"STOP"' in frames[2] and b"finishReason" not in frames[1]

        state.script = Script(chunks=["a"] * 50, chunk_delay=0.05)
        stream = cast(AsyncGenerator[Any, None], make(session, url).stream(REQUEST))
        assert isinstance(await anext(stream), TextDelta)
        await stream.aclose()  # the client leaves mid-stream
        for _ in range(100):
            if state.open_responses == 0:
                break
            await asyncio.sleep(0.02)
    assert state.disconnects == 1 and state.open_responses == 0

