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
    Provider,
    StreamEnd,
    StreamEvent,
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
        blocks = objects(data.get("content"))
        return Completion(
            text="".join(text(b.get("text")) or "" for b in blocks if b.get("type") == "text"),
            model=text(data.get("model")) or request.model,
            usage=_UsageTally().update(data.get("usage")).result(),
            finish_reason=text(data.get("stop_reason")),
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Relay text deltas; end at `message_stop` with the last cumulative usage."""
        model, finish, tally = request.model, None, _UsageTally()
        async with self._post(_body(request, stream=True)) as response:
            async for event in iter_sse(response.content):
                data = _parse(self.name, event)
                kind = data.get("type")
                if kind == "content_block_delta":
                    delta = obj(data.get("delta"))
                    # Only text is relayed: tool input, thinking and signature deltas
                    # belong to features this service does not request.
                    piece = text(delta.get("text"))
                    if delta.get("type") == "text_delta" and piece:
                        yield TextDelta(piece)
                elif kind == "message_start":
                    message = obj(data.get("message"))
                    model = text(message.get("model")) or model
                    tally.update(message.get("usage"))
                elif kind == "message_delta":
                    finish = text(obj(data.get("delta")).get("stop_reason")) or finish
                    tally.update(data.get("usage"))
                elif kind == "message_stop":
                    yield StreamEnd(model=model, usage=tally.result(), finish_reason=finish)
                    return
                elif kind == "error":
                    raise _stream_error(self.name, data.get("error"))
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

    __slots__ = ("cache_read", "cache_write", "input", "output", "seen")

    def __init__(self) -> None:
        self.input = self.output = self.cache_write = 0
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
        cache_read = count(raw.get("cache_read_input_tokens"))
        if cache_read is not None:
            self.cache_read = cache_read
        return self

    def result(self) -> Usage | None:
        """Our `Usage`, or None when the response carried no usage at all."""
        if not self.seen:
            return None
        # Anthropic's `input_tokens` excludes cache reads and cache writes; our Usage (like
        # OpenAI, Gemini and genai-prices' Anthropic extractor) counts every input token,
        # so both are added back. Cache writes cost more than plain input (1.25x-2x), which
        # an estimate from these counts prices at the plain input rate.
        return Usage(
            input_tokens=self.input + (self.cache_read or 0) + self.cache_write,
            output_tokens=self.output,
            cached_input_tokens=self.cache_read,
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


def _stream_error(provider: str, error: Any) -> ProviderError:
    # The HTTP status was already 200, so the error body's `type` is all we have to go on.
    error = error if isinstance(error, dict) else {"message": str(error)}
    kind = str(error.get("type") or "api_error")
    text = redact(str(error.get("message", "")))
    message = f"{provider} stream error ({redact(kind)[:64]}): {text}"
    cls = _ERROR_TYPES.get(kind, ProviderUnavailable)
    if cls is ProviderRateLimited:
        return ProviderRateLimited(message, provider=provider, status=None)
    return cls(message, provider=provider)
