"""Fuzzing the stream parsers: arbitrary bytes, chunkings, event sequences and JSON values.

Whatever an upstream (or a proxy in between) sends, the SSE reader yields only `SSEEvent`s,
and each provider yields only our own types or raises our own `ProviderError`: never a bare
KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError or JSONDecodeError.
Bounded and derandomized, so CI runs the same examples every time, fast.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.providers.anthropic import AnthropicProvider
from backend.providers.base import (
    Completion,
    CompletionRequest,
    Message,
    Provider,
    StreamEnd,
    TextDelta,
    Thinking,
    Usage,
)
from backend.providers.errors import ProviderAuthError, ProviderError
from backend.providers.google import GoogleProvider
from backend.providers.http import Timeouts, parse_retry_after
from backend.providers.openai import OpenAIProvider
from backend.providers.sse import SSEEvent, iter_sse
from backend.tests.providers.fuzz_wire import (
    BARE,
    JSON,
    FakeSession,
    chunked,
    frames,
    mostly,
    shaped,
)

FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# For one frame or body at a time, which is cheap: more examples, so that a wrong type four
# levels down (`choices[0].delta.refusal`) comes up several times, not once in a while.
FUZZ_WIDE = settings(FUZZ, max_examples=1000)
REQUEST = CompletionRequest(model="m", messages=(Message("user", "hi"),), system="s")
TIMEOUTS = Timeouts(connect=1, total=5)
CUTS = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)

_TEXT = st.text(max_size=10)
_COUNT = st.integers(0, 10**6)


def _words(*words: str) -> st.SearchStrategy[Any]:
    """The API's own words for a field, or any text."""
    return st.sampled_from(words) | _TEXT


_OPENAI_ERROR = {
    "message": _TEXT, "type": _words("requests", "tokens", "server_error", "invalid_request_error"),
    "param": JSON,
    "code": _words("rate_limit_exceeded", "invalid_api_key", "context_length_exceeded")
    | st.sampled_from([401, 429, 500, 503]),
}
OPENAI_CHUNK = shaped({
    "model": _TEXT,
    "choices": [{"delta": {"content": _TEXT, "role": _TEXT, "refusal": _TEXT,
                           "reasoning_content": _TEXT, "reasoning": _TEXT},
                 "finish_reason": _words("stop", "length", "content_filter", "abort")}],
    "usage": {"prompt_tokens": _COUNT, "completion_tokens": _COUNT,
              "prompt_tokens_details": {"cached_tokens": _COUNT},
              "completion_tokens_details": {"reasoning_tokens": _COUNT}},
})
OPENAI_BODY = shaped({
    "model": _TEXT,
    "choices": [{"message": {"content": _TEXT, "refusal": _TEXT},
                 "finish_reason": _words("stop", "length", "content_filter")}],
    "usage": {"prompt_tokens": _COUNT, "completion_tokens": JSON},
})
_ANTHROPIC_USAGE = {"input_tokens": _COUNT, "output_tokens": _COUNT,
                    "cache_read_input_tokens": JSON, "cache_creation_input_tokens": JSON,
                    "cache_creation": {"ephemeral_5m_input_tokens": _COUNT,
                                       "ephemeral_1h_input_tokens": _COUNT}}
_ANTHROPIC_ERROR = {
    "type": _words("rate_limit_error", "overloaded_error", "authentication_error", "api_error"),
    "message": _TEXT,
}
_BLOCK_DELTA = {"type": st.sampled_from(["text_delta", "thinking_delta", "input_json_delta"]),
                "text": _TEXT, "thinking": _TEXT}


def _event(kind: str | st.SearchStrategy[Any], tree: dict[str, Any]) -> st.SearchStrategy[Any]:
    """One kind of Messages API stream event: its `type`, and the rest of its shape."""
    return shaped(tree, required={"type": st.just(kind) if isinstance(kind, str) else kind})


ANTHROPIC_EVENT = st.one_of(
    _event("message_start", {"message": {"model": _TEXT, "usage": _ANTHROPIC_USAGE}}),
    _event("content_block_start", {
        "content_block": {"type": st.sampled_from(["text", "thinking"]), "text": _TEXT},
    }),
    _event("content_block_delta", {"delta": _BLOCK_DELTA}),
    _event("message_delta", {
        "delta": {"stop_reason": _words("end_turn", "max_tokens", "refusal")},
        "usage": _ANTHROPIC_USAGE,
    }),
    _event("error", {"error": _ANTHROPIC_ERROR}),
    _event(st.sampled_from(["message_stop", "ping"]) | _TEXT, {}),
    shaped({"type": JSON, "delta": _BLOCK_DELTA, "usage": _ANTHROPIC_USAGE}),
)
ANTHROPIC_BODY = shaped({
    "type": st.just("message"),
    "content": [{"type": st.just("text"), "text": _TEXT}],
    "model": _TEXT, "usage": _ANTHROPIC_USAGE, "stop_reason": _words("end_turn", "refusal"),
})
_GOOGLE_USAGE = {"promptTokenCount": _COUNT, "candidatesTokenCount": JSON,
                 "thoughtsTokenCount": JSON, "cachedContentTokenCount": JSON}
_GOOGLE_STATUS = {
    "code": st.sampled_from([400, 403, 429, 500, 503, 504]) | JSON, "message": _TEXT,
    "status": _words("RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INVALID_ARGUMENT"),
    "details": [{"@type": _words("type.googleapis.com/google.rpc.RetryInfo",
                                 "type.googleapis.com/google.rpc.ErrorInfo"),
                 "reason": _words("API_KEY_INVALID"),
                 "retryDelay": st.sampled_from(["1.5s", "1e999s", "nan", "-3s"]) | _TEXT}],
}
GOOGLE_FRAME = shaped({
    "candidates": [{"content": {"parts": [{"text": _TEXT, "thought": JSON}]},
                    "finishReason": _words("STOP", "MAX_TOKENS", "SAFETY", "OTHER",
                                           "CONTINUATION"),
                    "continuationToken": _TEXT}],
    "usageMetadata": _GOOGLE_USAGE,
    "modelVersion": _TEXT,
    "promptFeedback": {"blockReason": _TEXT},
})
# What each API sends with an error status; also, with a 200, as a body or a stream frame
# (a proxy's doing, or Gemini's in-stream Status). Kept apart from the answer shapes, where an
# `error` key would end most examples before the usage and finish paths are reached.
ERROR_BODIES = {
    "openai": shaped({"error": _OPENAI_ERROR}),
    "anthropic": shaped({"type": st.just("error"), "error": _ANTHROPIC_ERROR}),
    "google": shaped({"error": _GOOGLE_STATUS}),
}
ERROR_STATUSES = st.sampled_from(
    [400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504, 529]
) | st.integers(400, 599)
_HINTS = st.sampled_from(["1", "0.5", "30", "-1", "inf", "nan", "1e999", "soon", ""]) | _TEXT
RETRY_HEADERS = st.fixed_dictionaries(
    {}, optional={"retry-after": _HINTS, "Retry-After-Ms": _HINTS}
)


def _provider(name: str, session: Any) -> Provider:
    if name == "openai":
        return OpenAIProvider(
            session, base_url="http://127.0.0.1:9", api_key="k", timeouts=TIMEOUTS
        )
    if name == "anthropic":
        return AnthropicProvider(session, base_url="http://127.0.0.1:9", api_key="k",
                                 api_version="2023-06-01", timeouts=TIMEOUTS)
    return GoogleProvider(session, base_url="http://127.0.0.1:9", api_key="k",
                          api_version="v1beta", timeouts=TIMEOUTS)


def _check_usage(usage: Usage | None) -> None:
    if usage is not None:
        assert isinstance(usage, Usage)
        assert type(usage.input_tokens) is int and type(usage.output_tokens) is int
        assert usage.cached_input_tokens is None or type(usage.cached_input_tokens) is int


async def _stream(name: str, reads: list[bytes]) -> list[object]:
    items: list[object] = []
    try:
        async for item in _provider(name, FakeSession(reads)).stream(REQUEST):
            items.append(item)
    except ProviderError as exc:
        _check_error(exc)  # our own error tree: allowed, whatever the cause
    return items


def _check_error(exc: ProviderError) -> None:
    # A retry hint (a 429's, and a 5xx's or 529's too) is later rounded into Retry-After:
    # it must be a finite number.
    if exc.retry_after is not None:
        assert type(exc.retry_after) is float, exc.retry_after
        assert math.isfinite(exc.retry_after) and exc.retry_after >= 0
    assert exc.billed in (None, True, False)


def _check_stream(name: str, reads: list[bytes]) -> None:
    # Anything but a ProviderError escapes asyncio.run and fails the example, with its trace.
    items = asyncio.run(_stream(name, reads))
    for index, item in enumerate(items):
        if isinstance(item, TextDelta):
            assert type(item.text) is str and item.text
        elif isinstance(item, Thinking):
            continue
        else:
            assert isinstance(item, StreamEnd), item
            assert index == len(items) - 1, "StreamEnd must be the last event"
            assert type(item.model) is str
            assert item.finish_reason is None or type(item.finish_reason) is str
            _check_usage(item.usage)


def _check_complete(name: str, body: bytes) -> None:
    async def run() -> Completion | None:
        try:
            return await _provider(name, FakeSession([body])).complete(REQUEST)
        except ProviderError as exc:
            _check_error(exc)
            return None

    completion = asyncio.run(run())
    if completion is not None:
        assert type(completion.text) is str and type(completion.model) is str
        assert completion.finish_reason is None or type(completion.finish_reason) is str
        _check_usage(completion.usage)


async def _sse(reads: list[bytes]) -> list[SSEEvent]:
    content: Any = FakeSession(reads).post("").content
    return [event async for event in iter_sse(content)]


_SSE_PIECES = st.sampled_from([
    b"data: ", b"data:", b"event: ", b"id: 1", b": c", b"\n", b"\r", b"\r\n", b"\n\n",
    b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"{}", b"[DONE]",
])
SSE_BYTES = st.lists(_SSE_PIECES | st.binary(max_size=6), max_size=40).map(b"".join)


@FUZZ
@given(SSE_BYTES | st.binary(max_size=300), CUTS)
def test_sse_reader_takes_any_bytes_in_any_chunking(data: bytes, cuts: list[int]) -> None:
    """Any bytes: only SSEEvents of str, and the same events however the reads are split."""
    whole = asyncio.run(_sse([data]))
    assert all(type(e.event) is str and type(e.data) is str for e in whole)
    assert asyncio.run(_sse(chunked(data, cuts))) == whole


_NAME = st.text(st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters=":"),
                min_size=1, max_size=8).filter(lambda s: s.strip() == s)
_DATA = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r"), max_size=30)


@FUZZ
@given(st.lists(st.tuples(_NAME, _DATA), max_size=6), st.sampled_from(["\n", "\r\n", "\r"]), CUTS)
def test_sse_reader_returns_each_event_as_framed(
    events: list[tuple[str, str]], newline: str, cuts: list[int]
) -> None:
    """Events framed with any line ending, split anywhere, come back exactly."""
    raw = frames(events).replace(b"\n", newline.encode())
    got = asyncio.run(_sse(chunked(raw, cuts)))
    # An event with no data lines is not dispatched (WHATWG); a data line can be empty.
    assert got == [SSEEvent(name, data) for name, data in events]


# Mostly the API's own frames: anything else (text, an error, the end) usually ends the
# stream, and the frames after it would never be read.
_STREAMS = {
    "openai": st.lists(st.tuples(st.none(), mostly(
        OPENAI_CHUNK, st.just("[DONE]"), _TEXT, ERROR_BODIES["openai"], times=6
    )), max_size=8),
    "anthropic": st.lists(st.tuples(st.sampled_from([None, "message_start", "ping"]),
                                    mostly(ANTHROPIC_EVENT, _TEXT, times=6)), max_size=8),
    # Gemini also writes a failing stream's google.rpc.Status bare, outside the framing.
    "google": st.lists(mostly(
        st.tuples(st.none(), GOOGLE_FRAME),
        st.tuples(st.none(), _TEXT | ERROR_BODIES["google"]),
        st.tuples(st.just(BARE), ERROR_BODIES["google"] | _TEXT), times=6,
    ), max_size=8),
}
_FRAMES = {
    "openai": OPENAI_CHUNK | ERROR_BODIES["openai"],
    "anthropic": ANTHROPIC_EVENT,
    "google": GOOGLE_FRAME | ERROR_BODIES["google"],
}
_BODIES = {
    name: answer | ERROR_BODIES[name]
    for name, answer in (("openai", OPENAI_BODY), ("anthropic", ANTHROPIC_BODY),
                         ("google", GOOGLE_FRAME))
}


def _fuzz_provider(name: str) -> None:
    @FUZZ
    @given(events=_STREAMS[name], cuts=CUTS)
    def events(events: list[tuple[str | None, Any]], cuts: list[int]) -> None:
        _check_stream(name, chunked(frames(events), cuts))

    @FUZZ
    @given(data=SSE_BYTES)
    def raw_bytes(data: bytes) -> None:
        _check_stream(name, [data])

    @FUZZ_WIDE
    @given(frame=_FRAMES[name])
    def one_frame(frame: Any) -> None:
        _check_stream(name, [frames([(None, frame)])])

    @FUZZ_WIDE
    @given(body=_BODIES[name] | JSON)
    def bodies(body: Any) -> None:
        _check_complete(name, orjson.dumps(body))

    @FUZZ
    @given(status=ERROR_STATUSES, body=ERROR_BODIES[name] | JSON, headers=RETRY_HEADERS,
           streamed=st.booleans())
    def error_statuses(
        status: int, body: Any, headers: dict[str, str], streamed: bool
    ) -> None:
        _check_error_status(name, status, orjson.dumps(body), headers, streamed=streamed)

    @FUZZ
    @given(status=ERROR_STATUSES, raw=SSE_BYTES | st.binary(max_size=100))
    def error_garbage(status: int, raw: bytes) -> None:
        _check_error_status(name, status, raw, {}, streamed=False)

    events()
    raw_bytes()
    one_frame()
    bodies()
    error_statuses()
    error_garbage()


def _check_error_status(
    name: str, status: int, body: bytes, headers: dict[str, str], *, streamed: bool
) -> None:
    """An error status, whatever its body and hints: one of our errors, unbilled."""
    async def run() -> ProviderError:
        provider = _provider(name, FakeSession([body], status=status, headers=headers))
        try:
            if streamed:
                async for _ in provider.stream(REQUEST):
                    pass
            else:
                await provider.complete(REQUEST)
        except ProviderError as exc:
            return exc
        raise AssertionError(f"HTTP {status} did not fail")

    exc = asyncio.run(run())
    _check_error(exc)
    assert exc.billed is False  # an error status comes before any generation
    if status in (401, 403):
        assert isinstance(exc, ProviderAuthError)


def test_openai_mapping_survives_any_events_and_bodies() -> None:
    """Chat Completions chunks and bodies with any keys missing or of any type."""
    _fuzz_provider("openai")


def test_anthropic_mapping_survives_any_events_and_bodies() -> None:
    """Messages API events and bodies with any keys missing or of any type."""
    _fuzz_provider("anthropic")


def test_google_mapping_survives_any_frames_and_bodies() -> None:
    """GenerateContentResponse frames and bodies with any keys missing or of any type."""
    _fuzz_provider("google")


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_an_auth_error_whatever_the_status_word_says(status: int) -> None:
    """Found by the fuzzer: Google's body status DEADLINE_EXCEEDED made a 401 a timeout."""
    body = orjson.dumps({"error": {"code": status, "status": "DEADLINE_EXCEEDED"}})
    for streamed in (False, True):
        _check_error_status("google", status, body, {}, streamed=streamed)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_a_retry_after_header_that_is_not_a_finite_number_is_no_hint(value: str) -> None:
    """Such a hint would become an unroundable Retry-After (a 500) further up."""
    assert parse_retry_after({"retry-after": value}) is None
    assert parse_retry_after({"retry-after-ms": value, "retry-after": "2"}) == 2.0
