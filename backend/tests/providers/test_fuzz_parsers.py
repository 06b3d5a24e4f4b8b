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
    Usage,
)
from backend.providers.errors import ProviderError, ProviderRateLimited
from backend.providers.google import GoogleProvider
from backend.providers.http import Timeouts, parse_retry_after
from backend.providers.openai import OpenAIProvider
from backend.providers.sse import SSEEvent, iter_sse
from backend.tests.providers.fuzz_wire import JSON, FakeSession, chunked, frames, shaped

FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
REQUEST = CompletionRequest(model="m", messages=(Message("user", "hi"),), system="s")
TIMEOUTS = Timeouts(connect=1, total=5)
CUTS = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)

_TEXT = st.text(max_size=10)
OPENAI_CHUNK = shaped({
    "model": _TEXT,
    "choices": [{"delta": {"content": _TEXT, "role": _TEXT}, "finish_reason": _TEXT}],
    "usage": {"prompt_tokens": st.integers(0, 10**6), "completion_tokens": st.integers(0, 10**6),
              "prompt_tokens_details": {"cached_tokens": st.integers(0, 10**6)}},
    "error": {"message": _TEXT},
})
OPENAI_BODY = shaped({
    "model": _TEXT,
    "choices": [{"message": {"content": _TEXT}, "finish_reason": _TEXT}],
    "usage": {"prompt_tokens": st.integers(0, 10**6), "completion_tokens": JSON},
})
_ANTHROPIC_USAGE = {"input_tokens": st.integers(0, 10**6), "output_tokens": st.integers(0, 10**6),
                    "cache_read_input_tokens": JSON, "cache_creation_input_tokens": JSON}
ANTHROPIC_EVENT = shaped({
    "type": st.sampled_from(["message_start", "content_block_delta", "message_delta",
                             "message_stop", "error", "ping"]),
    "delta": {"type": st.sampled_from(["text_delta", "input_json_delta"]), "text": _TEXT,
              "stop_reason": _TEXT},
    "message": {"model": _TEXT, "usage": _ANTHROPIC_USAGE},
    "usage": _ANTHROPIC_USAGE,
    "error": {"type": st.sampled_from(["rate_limit_error", "overloaded_error"]), "message": _TEXT},
})
ANTHROPIC_BODY = shaped({
    "content": [{"type": st.just("text"), "text": _TEXT}],
    "model": _TEXT, "usage": _ANTHROPIC_USAGE, "stop_reason": _TEXT,
})
_GOOGLE_USAGE = {"promptTokenCount": st.integers(0, 10**6), "candidatesTokenCount": JSON,
                 "thoughtsTokenCount": JSON, "cachedContentTokenCount": JSON}
GOOGLE_FRAME = shaped({
    "candidates": [{"content": {"parts": [{"text": _TEXT, "thought": JSON}]},
                    "finishReason": _TEXT}],
    "usageMetadata": _GOOGLE_USAGE,
    "modelVersion": _TEXT,
    "promptFeedback": {"blockReason": _TEXT},
    "error": {"code": st.sampled_from([400, 429, 500, 504]), "message": _TEXT,
              "status": _TEXT,
              "details": [{"@type": st.just("type.googleapis.com/google.rpc.RetryInfo"),
                           "reason": _TEXT,
                           "retryDelay": st.sampled_from(["1.5s", "1e999s", "nan", "-3s"]) | _TEXT,
                           }]},
})


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
    # A retry hint is later rounded into Retry-After: it must be a finite number.
    if isinstance(exc, ProviderRateLimited) and exc.retry_after is not None:
        assert math.isfinite(exc.retry_after) and exc.retry_after >= 0


def _check_stream(name: str, reads: list[bytes]) -> None:
    # Anything but a ProviderError escapes asyncio.run and fails the example, with its trace.
    items = asyncio.run(_stream(name, reads))
    for index, item in enumerate(items):
        if isinstance(item, TextDelta):
            assert type(item.text) is str and item.text
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


_STREAMS = {
    "openai": st.lists(st.tuples(st.none(), OPENAI_CHUNK | st.just("[DONE]") | _TEXT), max_size=8),
    "anthropic": st.lists(st.tuples(st.sampled_from([None, "message_start", "ping"]),
                                    ANTHROPIC_EVENT | _TEXT), max_size=8),
    "google": st.lists(st.tuples(st.none(), GOOGLE_FRAME | _TEXT), max_size=8),
}
_BODIES = {"openai": OPENAI_BODY, "anthropic": ANTHROPIC_BODY, "google": GOOGLE_FRAME}


def _fuzz_provider(name: str) -> None:
    @FUZZ
    @given(events=_STREAMS[name], cuts=CUTS)
    def events(events: list[tuple[str | None, Any]], cuts: list[int]) -> None:
        _check_stream(name, chunked(frames(events), cuts))

    @FUZZ
    @given(data=SSE_BYTES)
    def raw_bytes(data: bytes) -> None:
        _check_stream(name, [data])

    @FUZZ
    @given(body=_BODIES[name] | JSON)
    def bodies(body: Any) -> None:
        _check_complete(name, orjson.dumps(body))

    events()
    raw_bytes()
    bodies()


def test_openai_mapping_survives_any_events_and_bodies() -> None:
    """Chat Completions chunks and bodies with any keys missing or of any type."""
    _fuzz_provider("openai")


def test_anthropic_mapping_survives_any_events_and_bodies() -> None:
    """Messages API events and bodies with any keys missing or of any type."""
    _fuzz_provider("anthropic")


def test_google_mapping_survives_any_frames_and_bodies() -> None:
    """GenerateContentResponse frames and bodies with any keys missing or of any type."""
    _fuzz_provider("google")


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_a_retry_after_header_that_is_not_a_finite_number_is_no_hint(value: str) -> None:
    """Such a hint would become an unroundable Retry-After (a 500) further up."""
    assert parse_retry_after({"retry-after": value}) is None
    assert parse_retry_after({"retry-after-ms": value, "retry-after": "2"}) == 2.0
