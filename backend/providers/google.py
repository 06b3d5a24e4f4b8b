"""Google Gemini through the Generative Language REST API.

Wire format, as google-genai 3.6.1 sends it (_api_client.py, models.py, _transformers.py):
POST {base_url}/{api_version}/models/{model}:generateContent, or
:streamGenerateContent?alt=sse for a stream (without `alt=sse` the API streams one JSON
array instead of events). The key travels in the `x-goog-api-key` header, never in a
`?key=` query string, which would land in access logs. Bodies are camelCase.

A stream is SSE `data:` frames ending in CRLF CRLF, each frame a whole
GenerateContentResponse. There is no `[DONE]`: the last chunk carries `finishReason`.
`usageMetadata` is a running total repeated on chunks, complete only on the last, so it is
replaced, never added.

Finish reasons: `CONTINUATION` (with a `continuationToken`) means the answer is not done;
like the SDK's automatic continuation, the same request is sent again with the token, up
to `MAX_HOPS` times, and the hops' usage is added up (each hop is billed on its own).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import quote

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
    ProviderError,
    ProviderRateLimited,
    ProviderStreamCut,
    ProviderTimeout,
)
from backend.providers.http import (
    Timeouts,
    parse_retry_after,
    post,
    read_json,
    redact,
    status_error,
)
from backend.providers.sse import RAW, SSEEvent, iter_sse
from backend.providers.wire import count, obj, objects, text

_ROLES = {"user": "user", "assistant": "model"}
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
MAX_HOPS = 8
_CONTINUATION = "CONTINUATION"
_PROMPT_BLOCKED = "blockReason:"  # a blocked prompt's reason, told apart from finishReason
# types.FinishReason (google/genai/types.py) in our words; anything else is `error`.
_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "UNEXPECTED_TOOL_CALL": "tool_calls",
}


class GoogleProvider(Provider):
    """Speaks generateContent / streamGenerateContent over a shared aiohttp session."""

    name = "google"

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
        self._root = f"{base_url.rstrip('/')}/{api_version.strip('/')}/"
        self._headers = {"Content-Type": "application/json", "x-goog-api-key": api_key}
        self._timeout = timeouts.client_timeout()
        self._stream_timeout = timeouts.stream_timeout()

    def thinks_silently(self, model: str) -> bool:
        """Gemini streams nothing while it thinks, unless thought summaries are asked for."""
        return model.removeprefix("models/").startswith(("gemini-2.5", "gemini-3"))

    async def complete(self, request: CompletionRequest) -> Completion:
        """One generateContent call (more when the answer says CONTINUATION)."""
        answer, usage, token, native = "", None, None, None
        model = request.model
        for _ in range(MAX_HOPS):
            url = self._url(request.model, "generateContent")
            async with self._post(url, request, token=token) as response:
                data = await read_json(response, self.name)
            candidate = _candidate(self.name, data, billed=False)
            data = obj(data[0] if isinstance(data, list) and data else data)
            answer += _text(candidate)
            model = text(data.get("modelVersion")) or model
            usage = _add(usage, _usage(data.get("usageMetadata")))
            native = _finish(data, candidate)
            token = _continuation(candidate, native)
            if token is None:
                break
        return Completion(
            text=answer, model=model, usage=usage, finish_reason=_normalise(native),
            native_finish=native,
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Relay each frame's text; end with the last frame's usage (summed over hops)."""
        model, done, finish, token, said = request.model, None, None, None, False
        url = self._url(request.model, "streamGenerateContent") + "?alt=sse"
        usage: dict[str, Any] | None = None
        try:
            for _ in range(MAX_HOPS):
                usage, finish = None, None
                async with self._post(url, request, stream=True, token=token) as response:
                    async for event in iter_sse(response.content, raw=True):
                        data = _parse_frame(self.name, event)
                        candidate = _candidate(
                            self.name, data, billed=None if said or usage else False
                        )
                        data = obj(data[0] if isinstance(data, list) and data else data)
                        model = text(data.get("modelVersion")) or model
                        # A running total per hop: the latest replaces; mapped at the end.
                        usage = obj(data.get("usageMetadata")) or usage
                        finish = _finish(data, candidate) or finish
                        token = _continuation(candidate, finish) or token
                        piece = _text(candidate)
                        if piece:
                            said = True
                            yield TextDelta(piece)
                        elif _thinks(candidate):
                            yield Thinking()
                if finish != _CONTINUATION or token is None:
                    break
                done, usage, token = _add(done, _usage(usage)), None, token
        except ProviderError as exc:
            exc.usage = exc.usage or _add(done, _usage(usage))
            raise
        if finish is None:
            # With no [DONE], the body's end is the only end signal, and a proxy or load
            # balancer closing the connection at a frame boundary looks the same. Every
            # finished answer names its finishReason (or a prompt blockReason), so without
            # one the text is truncated; calling it complete would record a partial answer.
            raise ProviderStreamCut(
                f"{self.name} stream ended without a finishReason", provider=self.name
            )
        yield StreamEnd(
            model, _add(done, _usage(usage)), _normalise(finish), native_finish=finish
        )

    def _url(self, model: str, method: str) -> str:
        # As the SDK's t_model: a bare id gets `models/`; full resource names pass as given.
        path = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
        return f"{self._root}{quote(path)}:{method}"

    def _post(
        self, url: str, request: CompletionRequest, *, stream: bool = False,
        token: str | None = None,
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        body = _body(request)
        if token is not None:
            body["continuationToken"] = token  # top level, as the SDK's request mapper puts it
        return post(
            self._session, url, provider=self.name, headers=self._headers, body=body,
            timeout=self._stream_timeout if stream else self._timeout, map_error=self._error,
        )

    def _error(self, status: int, raw: bytes, headers: Mapping[str, str]) -> ProviderError:
        # The whole error body matters: Google names an invalid key (HTTP 400) and the retry
        # delay (HTTP 429) only inside it.
        error = _api_error(self.name, status, _loads(raw), headers)
        error.billed = False  # an error status: nothing was generated
        return error


def _body(request: CompletionRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "contents": [
            {"role": _ROLES[m.role], "parts": [{"text": m.content}]} for m in request.messages
        ]
    }
    if request.system:
        # The API ignores a role here; the REST reference leaves it out (the SDK's
        # t_content happens to send "user").
        body["systemInstruction"] = {"parts": [{"text": request.system}]}
    config: dict[str, Any] = {}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.max_output_tokens is not None:
        config["maxOutputTokens"] = request.max_output_tokens
    if config:
        body["generationConfig"] = config
    return body


def _candidate(provider: str, data: Any, *, billed: bool | None) -> dict[str, Any]:
    """The first candidate of a GenerateContentResponse; raise the mapped error for `error`."""
    if isinstance(data, list) and len(data) == 1:
        data = data[0]  # a Status some front ends wrap in an array
    if not isinstance(data, dict):
        raise ProviderStreamCut(f"{provider} sent an unexpected body", provider=provider)
    error = data.get("error")
    if error:
        # An error inside a 200 (a frame, or a bare google.rpc.Status written outside the
        # SSE framing): its own code says what went wrong, 429 included.
        code = error.get("code") if isinstance(error, dict) else None
        exc = _api_error(provider, code if isinstance(code, int) else 500, data, {})
        exc.billed = billed
        raise exc
    return next(iter(objects(data.get("candidates"))), {})


def _thinks(candidate: dict[str, Any]) -> bool:
    parts = objects(obj(candidate.get("content")).get("parts"))
    return any(p.get("thought") for p in parts)


def _continuation(candidate: dict[str, Any], finish: str | None) -> str | None:
    """The token to resume with, when the answer stopped at the per-request limit."""
    token = text(candidate.get("continuationToken"))
    return token if token and finish == _CONTINUATION else None


def _normalise(native: str | None) -> FinishReason | None:
    if native is None:
        return None
    if native.startswith(_PROMPT_BLOCKED):  # any reason, OTHER included, is a block
        return "content_filter"
    if native == _CONTINUATION:  # out of hops: the answer is cut, as by MAX_TOKENS
        return "length"
    return _FINISH.get(native, "error")


def _add(a: Usage | None, b: Usage | None) -> Usage | None:
    return b if a is None else a if b is None else a + b


def _text(candidate: dict[str, Any]) -> str:
    parts = objects(obj(candidate.get("content")).get("parts"))
    # Thinking models may return their thought summaries as parts marked `thought`;
    # they are not the answer (the SDK's `.text` skips them too).
    return "".join(text(p.get("text")) or "" for p in parts if not p.get("thought"))


def _finish(data: dict[str, Any], candidate: dict[str, Any]) -> str | None:
    # A safety block is an answer, not a failure: the call succeeded and is billed, so it
    # comes back with empty text, its reason as the finish reason and its usage, for the
    # chat service to judge. A blocked prompt has no candidate, only promptFeedback.
    reason = text(candidate.get("finishReason"))
    if reason:
        return reason
    blocked = text(obj(data.get("promptFeedback")).get("blockReason"))
    return f"{_PROMPT_BLOCKED}{blocked}" if blocked else None


def _usage(raw: Any) -> Usage | None:
    if not raw or not isinstance(raw, dict):
        return None
    # Google bills thinking tokens as output, and candidatesTokenCount leaves them out
    # (totalTokenCount = prompt + toolUsePrompt + candidates + thoughts), so output adds
    # them back, as genai-prices' Gemini extractor does. Tool results fed back to the
    # model are input. proto3 JSON omits zero counts, so an absent count is 0.
    def tokens(key: str) -> int:
        return count(raw.get(key)) or 0

    return Usage(
        input_tokens=tokens("promptTokenCount") + tokens("toolUsePromptTokenCount"),
        output_tokens=tokens("candidatesTokenCount") + tokens("thoughtsTokenCount"),
        cached_input_tokens=tokens("cachedContentTokenCount"),
        reasoning_tokens=count(raw.get("thoughtsTokenCount")),
    )


def _api_error(
    provider: str, status: int, body: Any, headers: Mapping[str, str]
) -> ProviderError:
    """Map a google.rpc.Status body ({"error": {code, message, status, details}})."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return status_error(provider, status, str(body)[:300], headers)
    message = str(error.get("message") or "")
    details = objects(error.get("details"))
    reasons = {text(d.get("reason")) for d in details}
    # Google answers a wrong key with 400 INVALID_ARGUMENT, not 401; ErrorInfo's reason
    # (or, without details, the message) is what tells it from a bad request.
    if "API_KEY_INVALID" in reasons or message.startswith("API key not valid"):
        return ProviderAuthError(
            f"{provider} rejected the API key (HTTP {status})", provider=provider, status=status
        )
    if status in (401, 403):
        # The HTTP status says a key or permission was refused whatever the body's status
        # word: a proxy's 401 saying DEADLINE_EXCEEDED is still not worth a fallback's time.
        return status_error(provider, status, message, headers)
    if status == 429:
        retry = parse_retry_after(headers)
        return ProviderRateLimited(
            f"{provider} returned HTTP 429: {redact(message)}", provider=provider, status=status,
            retry_after=retry if retry is not None else _retry_delay(details),
        )
    if status == 504 or error.get("status") == "DEADLINE_EXCEEDED":
        return ProviderTimeout(
            f"{provider} returned HTTP {status}: {redact(message)}", provider=provider,
            status=status,
        )
    return status_error(provider, status, message, headers)


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    # Google's 429 carries its hint in the body, not a Retry-After header: a RetryInfo
    # detail whose retryDelay is a JSON proto Duration, seconds with an "s" ("30s", "1.5s").
    for detail in details:
        if detail.get("@type") == _RETRY_INFO:
            try:
                seconds = float(str(detail.get("retryDelay", "")).removesuffix("s"))
            except ValueError:
                return None
            return max(0.0, seconds) if math.isfinite(seconds) else None
    return None


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def _parse_frame(provider: str, event: SSEEvent) -> Any:
    try:
        return orjson.loads(event.data)
    except orjson.JSONDecodeError as exc:
        what = "an invalid text outside its frames" if event.event == RAW else "an invalid frame"
        message = f"{provider} sent {what}"
        raise ProviderStreamCut(message, provider=provider) from exc
