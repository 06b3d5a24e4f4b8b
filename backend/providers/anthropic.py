"""Anthropic Messages API.

Wire format: POST {base_url}/v1/messages with `x-api-key` and `anthropic-version`; the
system prompt is a top-level field, not a message, and `max_tokens` is required. Streams
are named SSE events: `message_start` (real input usage, placeholder output count),
`content_block_*`, `ping`, `message_delta` (cumulative usage, stop reason) and the
terminal `message_stop`; a failure after the 200 arrives as an `error` event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from backend.providers.base import (
    Completion,
    CompletionRequest,
    FinishReason,
    Provider,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Thinking,
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
from backend.providers.http import Timeouts, error_text, post, read_json, redact
from backend.providers.sse import SSEEvent, iter_sse
from backend.providers.wire import body_object, count, obj, objects, text

# The API refuses a request without `max_tokens`; when a specialist sets no limit we ask
# for 4096, which every current Claude model accepts and which bounds a runaway answer.
DEFAULT_MAX_TOKENS = 4096

# Error `type`s of Anthropic's error body, for `error` events that arrive after the 200
# (over HTTP the status code already says the same). Unknown types count as the upstream
# failing: it accepted the request, then could not finish it.
_ERROR_TYPES: dict[str, type[ProviderError]] = {
    "authentication_error": ProviderAuthError,
    "permission_error": ProviderAuthError,
    "invalid_request_error": ProviderBadRequest,
    "not_found_error": ProviderBadRequest,
    "request_too_large": ProviderBadRequest,
    "rate_limit_error": ProviderRateLimited,
    "timeout_error": ProviderTimeout,
    "api_error": ProviderUnavailable,
    "overloaded_error": ProviderUnavailable,
}
# stop_reason values (anthropic/types/stop_reason.py) in our words; `refusal` may follow
# some text, which then stays the answer (Anthropic: drop such a turn before going on).
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "refusal",
    "tool_use": "tool_calls",
}


class AnthropicProvider(Provider):
    """Speaks the Messages API over a shared aiohttp session."""

    name = "anthropic"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str,
        api_version: str,
        timeouts: Timeouts,
    ) -> None:
        self._session = session
        # Like the SDK, the base URL carries no version: the path names it.
        self._url = base_url.rstrip("/") + "/v1/messages"
        self._headers = {"content-type": "application/json", "anthropic-version": api_version}
        if api_key:
            self._headers["x-api-key"] = api_key
        self._timeout = timeouts.client_timeout()
        self._stream_timeout = timeouts.stream_timeout()

    async def complete(self, request: CompletionRequest) -> Completion:
        """One non-streaming call; the answer's text blocks are joined."""
        async with self._post(_body(request, stream=False)) as response:
            data = body_object(self.name, await read_json(response, self.name))
        if data.get("type") == "error":
            # A 200 whose body is an error (a proxy's doing): nothing was generated.
            raise _stream_error(self.name, data.get("error"), billed=False)
        blocks = objects(data.get("content"))
        native = text(data.get("stop_reason"))
        return Completion(
            text="".join(text(b.get("text")) or "" for b in blocks if b.get("type") == "text"),
            model=text(data.get("model")) or request.model,
            usage=_UsageTally().update(data.get("usage")).result(),
            finish_reason=_normalise(native),
            native_finish=native,
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Relay text deltas; end at `message_stop` with the last cumulative usage."""
        model, finish, tally = request.model, None, _UsageTally()
        try:
            async with self._post(_body(request, stream=True)) as response:
                async for event in iter_sse(response.content):
                    data = _parse(self.name, event)
                    kind = data.get("type")
                    if kind == "content_block_delta":
                        delta = obj(data.get("delta"))
                        # Text is relayed; thinking is a sign of life; tool input and
                        # signatures belong to features this service does not request.
                        piece = text(delta.get("text"))
                        if delta.get("type") == "text_delta" and piece:
                            yield TextDelta(piece)
                        elif delta.get("type") == "thinking_delta":
                            yield Thinking()
                    elif kind == "content_block_start":
                        # The API opens a text block empty, but a proxy may put text in it.
                        block = obj(data.get("content_block"))
                        piece = text(block.get("text"))
                        if block.get("type") == "text" and piece:
                            yield TextDelta(piece)
                    elif kind == "message_start":
                        message = obj(data.get("message"))
                        model = text(message.get("model")) or model
                        tally.update(message.get("usage"))
                    elif kind == "message_delta":
                        finish = text(obj(data.get("delta")).get("stop_reason")) or finish
                        tally.update(data.get("usage"))
                    elif kind == "message_stop":
                        yield StreamEnd(
                            model, tally.result(), _normalise(finish), native_finish=finish
                        )
                        return
                    elif kind == "error":
                        raise _stream_error(self.name, data.get("error"))
        except ProviderError as exc:
            # message_start's counts are the provider's own: kept, not re-estimated.
            exc.usage = exc.usage or tally.result()
            raise
        raise ProviderStreamCut(
            f"{self.name} stream ended without message_stop", provider=self.name
        )

    def _post(self, body: dict[str, Any]) -> Any:
        return post(
            self._session, self._url, provider=self.name, headers=self._headers, body=body,
            timeout=self._stream_timeout if body.get("stream") else self._timeout,
            read_error=_read_error,
        )


def _body(request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
    max_tokens = request.max_output_tokens
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.system:
        body["system"] = request.system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if stream:
        body["stream"] = True
    return body


class _UsageTally:
    """Anthropic's usage counts, where a later report replaces (never adds to) an earlier one.

    `message_start` carries the real input counts and a placeholder output count;
    `message_delta` carries the cumulative output count and, on newer API versions, the
    input and cache counts again. Fields absent from a report keep their earlier value.
    """

    __slots__ = ("cache_1h", "cache_read", "cache_write", "input", "output", "seen")

    def __init__(self) -> None:
        self.input = self.output = self.cache_write = self.cache_1h = 0
        self.cache_read: int | None = None
        self.seen = False

    def update(self, raw: Any) -> _UsageTally:
        """Take every count present in one `usage` object."""
        if not raw or not isinstance(raw, dict):
            return self
        self.seen = True
        self.input = _count(raw, "input_tokens", self.input)
        self.output = _count(raw, "output_tokens", self.output)
        self.cache_write = _count(raw, "cache_creation_input_tokens", self.cache_write)
        if count(raw.get("cache_read_input_tokens")) is not None:
            self.cache_read = count(raw.get("cache_read_input_tokens"))
        # The split by lifetime (API 2023-06-01 with 1-hour caching): 1-hour writes cost 2x
        # input, 5-minute ones 1.25x. Without the split every write is a 5-minute one.
        split = raw.get("cache_creation")
        if isinstance(split, dict):
            self.cache_1h = _count(split, "ephemeral_1h_input_tokens", self.cache_1h)
        return self

    def result(self) -> Usage | None:
        """Our `Usage`, or None when the response carried no usage at all."""
        if not self.seen:
            return None
        # Anthropic's `input_tokens` excludes cache reads and cache writes; our Usage (like
        # OpenAI, Gemini and genai-prices' Anthropic extractor) counts every input token,
        # so both are added back; the writes are also passed on alone, as they cost more.
        return Usage(
            input_tokens=self.input + (self.cache_read or 0) + self.cache_write,
            output_tokens=self.output,
            cached_input_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
            cache_write_1h_tokens=min(self.cache_1h, self.cache_write),
        )


def _count(raw: dict[str, Any], key: str, default: int) -> int:
    value = count(raw.get(key))
    return default if value is None else value


def _parse(provider: str, event: SSEEvent) -> dict[str, Any]:
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError as exc:
        message = f"{provider} sent an invalid stream event"
        raise ProviderStreamCut(message, provider=provider) from exc
    return data if isinstance(data, dict) else {}


def _read_error(raw: bytes) -> str:
    return error_text(raw, "error", "message")


def _normalise(native: str | None) -> FinishReason | None:
    return None if native is None else _FINISH.get(native, "stop")


def _stream_error(provider: str, error: Any, *, billed: bool | None = None) -> ProviderError:
    # The HTTP status was already 200, so the error body's `type` is all we have to go on.
    error = error if isinstance(error, dict) else {"message": str(error)}
    kind = str(error.get("type") or "api_error")
    detail = redact(str(error.get("message") or ""))
    message = f"{provider} stream error ({redact(kind)[:64]}): {detail}"
    cls = _ERROR_TYPES.get(kind, ProviderUnavailable)
    return cls(message, provider=provider, status=None, billed=billed)
