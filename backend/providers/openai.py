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
    Provider,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
)
from backend.providers.errors import ProviderError, ProviderStreamCut, ProviderUnavailable
from backend.providers.http import Timeouts, error_text, post, read_json, redact
from backend.providers.sse import iter_sse
from backend.providers.wire import body_object, count, obj, objects, text

# Reasoning models refuse `max_tokens` and any non-default temperature.
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")


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

    async def complete(self, request: CompletionRequest) -> Completion:
        """One non-streaming call."""
        async with self._post(_body(request, stream=False)) as response:
            data = body_object(self.name, await read_json(response, self.name))
        choice = next(iter(objects(data.get("choices"))), {})
        message = obj(choice.get("message"))
        return Completion(
            text=text(message.get("content")) or "",
            model=text(data.get("model")) or request.model,
            usage=_usage(data.get("usage")),
            finish_reason=text(choice.get("finish_reason")),
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Relay content deltas; end with the usage chunk's counts."""
        model, usage, finish = request.model, None, None
        async with self._post(_body(request, stream=True)) as response:
            async for event in iter_sse(response.content):
                if event.data == "[DONE]":
                    yield StreamEnd(model=model, usage=usage, finish_reason=finish)
                    return
                chunk = _parse_chunk(self.name, event.data)
                if chunk.get("error"):
                    raise _stream_error(self.name, chunk["error"])
                model = text(chunk.get("model")) or model
                usage = _usage(chunk.get("usage")) or usage
                for choice in objects(chunk.get("choices")):
                    delta = text(obj(choice.get("delta")).get("content"))
                    if delta:
                        yield TextDelta(delta)
                    finish = text(choice.get("finish_reason")) or finish
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


def _usage(raw: Any) -> Usage | None:
    if not raw or not isinstance(raw, dict):
        return None
    details = obj(raw.get("prompt_tokens_details"))
    return Usage(
        input_tokens=count(raw.get("prompt_tokens")) or 0,
        output_tokens=count(raw.get("completion_tokens")) or 0,
        cached_input_tokens=count(details.get("cached_tokens")),
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


def _stream_error(provider: str, error: Any) -> ProviderError:
    # A mid-stream `{"error": ...}` frame: the HTTP status was already 200, so it counts
    # as the upstream failing rather than as our request being wrong.
    message = str(error.get("message") or "") if isinstance(error, dict) else str(error)
    return ProviderUnavailable(f"{provider} stream error: {redact(message)}", provider=provider)
