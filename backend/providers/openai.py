"""OpenAI Chat Completions, and any OpenAI-compatible server (Ollama, vLLM) by base URL.

Wire format: POST {base_url}/chat/completions, `Authorization: Bearer`; streams are SSE
`data:` frames ending in `data: [DONE]`; usage comes on an extra last chunk with empty
`choices`, and only when `stream_options.include_usage` is set.
"""

from __future__ import annotations

import re
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
from backend.providers.sse import iter_sse
from backend.providers.wire import body_object, count, obj, objects, text

# Reasoning models refuse `max_tokens` and any non-default temperature.
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    # Compatible servers: vLLM says `abort` for a request it dropped, some say `error`.
    "abort": "error",
    "error": "error",
}
# The error `type` / `code` words of OpenAI's error body, for the errors that arrive with a
# 200 (a compatible server or a proxy writing `{"error": ...}` as the body or a frame).
_ERROR_WORDS: tuple[tuple[tuple[str, ...], type[ProviderError]], ...] = (
    (("rate_limit", "insufficient_quota"), ProviderRateLimited),
    (("invalid_api_key", "authentication", "permission"), ProviderAuthError),
    (("timeout",), ProviderTimeout),
    (("invalid_request", "not_found", "unsupported", "context_length"), ProviderBadRequest),
)
_STATUS_ERRORS: dict[int, type[ProviderError]] = {
    400: ProviderBadRequest, 401: ProviderAuthError, 403: ProviderAuthError,
    404: ProviderBadRequest, 408: ProviderTimeout, 422: ProviderBadRequest,
    429: ProviderRateLimited, 504: ProviderTimeout,
}


class OpenAIProvider(Provider):
    """Speaks Chat Completions over a shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str | None,
        timeouts: Timeouts,
        name: str = "openai",
    ) -> None:
        self.name = name
        self._session = session
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeouts.client_timeout()
        self._stream_timeout = timeouts.stream_timeout()

    def thinks_silently(self, model: str) -> bool:
        """o-series and gpt-5 stream nothing at all while they reason."""
        return bool(_REASONING_MODEL.match(model))

    async def complete(self, request: CompletionRequest) -> Completion:
        """One non-streaming call."""
        async with self._post(_body(request, stream=False)) as response:
            data = body_object(self.name, await read_json(response, self.name))
        if data.get("error"):
            # HTTP 200 with an error body in place of the answer: nothing was generated.
            raise body_error(self.name, data["error"], billed=False)
        choice = next(iter(objects(data.get("choices"))), {})
        message = obj(choice.get("message"))
        native = text(choice.get("finish_reason"))
        content = text(message.get("content")) or ""
        refusal = text(message.get("refusal")) or ""
        return Completion(
            text=content or refusal,
            model=text(data.get("model")) or request.model,
            usage=_usage(data.get("usage")),
            finish_reason="refusal" if refusal else _normalise(native),
            native_finish=native,
            refusal=bool(refusal) and not content,
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Relay content deltas; end with the usage chunk's counts."""
        model, usage, finish, refused, said = request.model, None, None, False, False
        try:
            async with self._post(_body(request, stream=True)) as response:
                async for event in iter_sse(response.content):
                    if event.data == "[DONE]":
                        reason = "refusal" if refused else _normalise(finish)
                        yield StreamEnd(model, usage, reason, native_finish=finish)
                        return
                    chunk = _parse_chunk(self.name, event.data)
                    if chunk.get("error"):
                        # Before any text or usage, the upstream refused before generating.
                        billed = None if said or usage else False
                        raise body_error(self.name, chunk["error"], billed=billed)
                    # The same defensive reads as wire.py's helpers (a value of the wrong
                    # type is a missing one), written out: this runs for every token.
                    value = chunk.get("model")
                    if value and isinstance(value, str):
                        model = value
                    if value := chunk.get("usage"):
                        usage = _usage(value) or usage
                    choices = chunk.get("choices")
                    if not isinstance(choices, list):
                        continue
                    for choice in choices:
                        if not isinstance(choice, dict):
                            continue
                        delta = choice.get("delta")
                        if isinstance(delta, dict):
                            content, refusal = delta.get("content"), delta.get("refusal")
                            if content and isinstance(content, str):
                                said = True
                                yield TextDelta(content)
                            elif refusal and isinstance(refusal, str):
                                said = refused = True
                                yield TextDelta(refusal, refusal=True)
                            elif delta.get("reasoning_content") or delta.get("reasoning"):
                                # Compatible servers (vLLM, Ollama, DeepSeek) stream reasoning.
                                yield Thinking()
                        value = choice.get("finish_reason")
                        if value and isinstance(value, str):
                            finish = value
        except ProviderError as exc:
            exc.usage = exc.usage or usage
            raise
        raise ProviderStreamCut(f"{self.name} stream ended without [DONE]", provider=self.name)

    def _post(self, body: dict[str, Any]) -> Any:
        return post(
            self._session, self._url, provider=self.name, headers=self._headers, body=body,
            timeout=self._stream_timeout if body.get("stream") else self._timeout,
            read_error=_read_error,
        )


def _body(request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend({"role": m.role, "content": m.content} for m in request.messages)
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    reasoning = bool(_REASONING_MODEL.match(request.model))
    if request.max_output_tokens is not None:
        body["max_completion_tokens" if reasoning else "max_tokens"] = request.max_output_tokens
    if request.temperature is not None and not reasoning:
        body["temperature"] = request.temperature
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _normalise(native: str | None) -> FinishReason | None:
    if native is None:
        return None
    return _FINISH.get(native, "stop")


def _usage(raw: Any) -> Usage | None:
    if not raw or not isinstance(raw, dict):
        return None
    details = obj(raw.get("prompt_tokens_details"))
    output = obj(raw.get("completion_tokens_details"))
    return Usage(
        input_tokens=count(raw.get("prompt_tokens")) or 0,
        output_tokens=count(raw.get("completion_tokens")) or 0,
        cached_input_tokens=count(details.get("cached_tokens")),
        reasoning_tokens=count(output.get("reasoning_tokens")),
    )


def _read_error(raw: bytes) -> str:
    return error_text(raw, "error", "message")


def _parse_chunk(provider: str, data: str) -> dict[str, Any]:
    # A compatible server or a proxy in between can garble a frame (an HTML error page,
    # say); that is a broken stream, not a bare JSONDecodeError escaping our error tree.
    try:
        return body_object(provider, orjson.loads(data))
    except orjson.JSONDecodeError as exc:
        raise ProviderStreamCut(
            f"{provider} sent a stream frame that is not JSON", provider=provider
        ) from exc


def body_error(provider: str, error: Any, *, billed: bool | None) -> ProviderError:
    """Map an `{"error": ...}` that came with HTTP 200 (as the body or a stream frame).

    The status cannot say what failed, so the error's own words do: a numeric `code` or
    `status` (what proxies relaying another API write), then OpenAI's `type` and `code`
    strings. Anything else counts as the upstream failing, not our request being wrong.
    """
    error = error if isinstance(error, dict) else {"message": str(error)}
    # `"message": null` (or a number) is still no message to crash on.
    message = f"{provider} error in a 200 response: {redact(str(error.get('message') or ''))}"
    status = next(
        (v for v in (error.get("code"), error.get("status")) if isinstance(v, int)), None
    )
    cls: type[ProviderError] = ProviderUnavailable
    if status is not None:
        cls = _STATUS_ERRORS.get(status, ProviderUnavailable if status >= 500 else cls)
    else:
        kind = str(error.get("type") or "").lower()
        words = f"{kind} {error.get('code') or ''}".lower()
        # OpenAI's 429 body says `"type": "requests"` (or "tokens"): which limit was hit.
        if kind in ("requests", "tokens"):
            cls = ProviderRateLimited
        else:
            cls = next((c for keys, c in _ERROR_WORDS if any(k in words for k in keys)), cls)
    return cls(message, provider=provider, status=status, billed=billed)
