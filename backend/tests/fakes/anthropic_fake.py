"""A fake of Anthropic's Messages API (POST /v1/messages), in its real wire format.

Shapes follow the API reference and the official SDK's types and stream accumulator
(`anthropic/types/message.py`, `raw_message_*_event.py`, `message_delta_usage.py`,
`lib/streaming/_messages.py`, `_streaming.py`). `Script` counts are our normalised ones
(input includes cached tokens); the fake splits them the way Anthropic reports them:
`input_tokens` excludes cache reads, which come as `cache_read_input_tokens`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiohttp import web

from backend.tests.fakes.script import FakeState, RecordedRequest, Script
from backend.tests.fakes.server import cut, serve

API_KEY = "test-anthropic-key"

# The `error.type` the real API sends with each status (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# The start event's output count is a placeholder the final `message_delta` replaces.
_PLACEHOLDER_OUTPUT_TOKENS = 1


def build_app(
    state: FakeState,
    *,
    stream_error_type: str = "overloaded_error",
    delta_input_usage: bool = True,
) -> web.Application:
    """The fake API, answering POST /v1/messages from `state.script`."""
    # Beyond the shared Script: `stream_error_type` is the `error.type` of the in-stream
    # error event; `delta_input_usage` picks the newer `message_delta` usage that repeats
    # the input and cache counts (True) or the older one with only `output_tokens` (False).

    async def messages(request: web.Request) -> web.StreamResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        state.requests.append(
            RecordedRequest(
                method=request.method, path=request.path, query=dict(request.query),
                headers={k.lower(): v for k, v in request.headers.items()}, json=body,
            )
        )
        script = state.script
        if script.first_byte_delay:
            await asyncio.sleep(script.first_byte_delay)
        refusal = _refusal(request, body)
        if refusal is not None:
            return refusal
        if state.should_fail():
            status = script.error_status or 500
            return error_response(status, script.error_message, retry_after=script.retry_after)
        if body.get("stream"):
            return await _stream(request, state, body, stream_error_type, delta_input_usage)
        return await _message(request, script, body)

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    return app


@asynccontextmanager
async def start(
    script: Script | None = None,
    *,
    stream_error_type: str = "overloaded_error",
    delta_input_usage: bool = True,
) -> AsyncIterator[tuple[str, FakeState]]:
    """Serve the fake; yield (base URL without a version, as ANTHROPIC_BASE_URL takes it, state)."""
    state = FakeState(script=script or Script())
    app = build_app(
        state, stream_error_type=stream_error_type, delta_input_usage=delta_input_usage
    )
    async with serve(app) as base_url:
        yield base_url, state


def error_response(status: int, message: str, *, retry_after: str | None = None) -> web.Response:
    """The real error body: {"type": "error", "error": {"type", "message"}, "request_id"}."""
    request_id = _id("req_")
    error_type = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    headers = {"request-id": request_id}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    payload = {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }
    return web.json_response(payload, status=status, headers=headers, dumps=_dumps)


def _refusal(request: web.Request, body: Any) -> web.Response | None:
    # Auth first, as the real API does. The documented header is `x-api-key`; the official
    # Python SDK (anthropic 2.x, `_client.py` `_api_key_auth`) sends `Authorization: Bearer`.
    key = request.headers.get("x-api-key")
    bearer = request.headers.get("authorization", "")
    if key is None and bearer.startswith("Bearer "):
        key = bearer.removeprefix("Bearer ")
    if key != API_KEY:
        return error_response(401, "invalid x-api-key")
    if "anthropic-version" not in request.headers:
        return error_response(400, "anthropic-version: header is required")
    problem = _invalid_body(body)
    return None if problem is None else error_response(400, problem)


def _invalid_body(body: Any) -> str | None:
    # The checks a client is most likely to get wrong, with the real API's messages.
    if not isinstance(body, dict):
        return "messages: Input should be a valid JSON object"
    for field in ("model", "max_tokens", "messages"):
        if field not in body:
            return f"{field}: Field required"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "temperature: range: 0..1"
    return None


async def _message(
    request: web.Request, script: Script, body: dict[str, Any]
) -> web.StreamResponse:
    payload = _message_object(script, body, text="".join(script.chunks), streaming=False)
    if script.error_with_200:  # a proxy's 200 whose body is the API's error object
        error = {"type": script.stream_error_kind or "api_error", "message": script.error_message}
        payload = {"type": "error", "error": error}
    raw = _dumps(payload).encode()
    headers = {"request-id": _id("req_"), "content-type": "application/json"}
    if script.cut_after_chunks is None:
        return web.Response(body=raw, headers=headers)
    # A truncated body: the promised length, half of it sent, then the connection dropped.
    resp = web.StreamResponse(headers=headers)
    resp.content_length = len(raw)
    await resp.prepare(request)
    await resp.write(raw[: len(raw) // 2])
    cut(request, resp)
    return resp


def _message_object(
    script: Script, body: dict[str, Any], *, text: str, streaming: bool
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": _id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": script.model or body.get("model"),
        # A stream's start event has no content yet and no stop reason.
        "content": [] if streaming or not text else [{"type": "text", "text": text}],
        "stop_reason": None if streaming else script.stop_reason or "end_turn",
        "stop_sequence": None,
    }
    if not script.omit_usage:
        usage = _input_usage(script)
        usage["output_tokens"] = _PLACEHOLDER_OUTPUT_TOKENS if streaming else script.output_tokens
        usage["service_tier"] = "standard"
        message["usage"] = usage
    return message


def _input_usage(script: Script) -> dict[str, Any]:
    writes = script.cache_write_5m + script.cache_write_1h
    usage: dict[str, Any] = {
        "input_tokens": script.input_tokens - script.cached_input_tokens - writes,
        "cache_creation_input_tokens": writes,
        "cache_read_input_tokens": script.cached_input_tokens,
    }
    if writes:  # the split by lifetime (usage.cache_creation), sent once caching is used
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": script.cache_write_5m,
            "ephemeral_1h_input_tokens": script.cache_write_1h,
        }
    return usage


async def _stream(
    request: web.Request,
    state: FakeState,
    body: dict[str, Any],
    error_type: str,
    delta_input_usage: bool,
) -> web.StreamResponse:
    script = state.script
    resp = web.StreamResponse(
        headers={
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "request-id": _id("req_"),
        }
    )
    with state.streaming():
        await resp.prepare(request)
        start = _message_object(script, body, text="", streaming=True)
        await _send(resp, "message_start", {"type": "message_start", "message": start})
        chunks = list(script.chunks)
        first = chunks.pop(0) if script.text_in_block_start and chunks else ""
        block = await _thinking_block(resp, script.thinking) if script.thinking else 0
        await _send(resp, "content_block_start", {
            "type": "content_block_start", "index": block,
            "content_block": {"type": "text", "text": first},
        })
        await _send(resp, "ping", {"type": "ping"})
        for index in range(len(chunks) + 1):
            if index == script.stream_error_after:
                kind = script.stream_error_kind or error_type
                error = {"type": kind, "message": script.error_message}
                await _send(resp, "error", {"type": "error", "error": error})
                await resp.write_eof()
                return resp
            if index == script.cut_after_chunks:
                cut(request, resp)
                return resp
            if index == len(chunks):
                break
            if script.chunk_delay:
                await asyncio.sleep(script.chunk_delay)
            await _send(resp, "content_block_delta", {
                "type": "content_block_delta", "index": block,
                "delta": {"type": "text_delta", "text": chunks[index]},
            })
        await _finish(resp, script, delta_input_usage, block)
    return resp


async def _thinking_block(resp: web.StreamResponse, thinking: list[str]) -> int:
    """Extended thinking's block (index 0), as the API streams it; the text block is next."""
    await _send(resp, "content_block_start", {
        "type": "content_block_start", "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    })
    for part in thinking:
        await _send(resp, "content_block_delta", {
            "type": "content_block_delta", "index": 0,
            "delta": {"type": "thinking_delta", "thinking": part},
        })
    await _send(resp, "content_block_delta", {
        "type": "content_block_delta", "index": 0,
        "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM" + "x" * 24},
    })
    await _send(resp, "content_block_stop", {"type": "content_block_stop", "index": 0})
    return 1


async def _finish(
    resp: web.StreamResponse, script: Script, delta_input_usage: bool, block: int = 0
) -> None:
    await _send(resp, "content_block_stop", {"type": "content_block_stop", "index": block})
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": script.stop_reason or "end_turn", "stop_sequence": None},
    }
    if not script.omit_usage:
        # Cumulative counts: output is the whole answer's, not this event's share.
        usage = _input_usage(script) if delta_input_usage else {}
        usage["output_tokens"] = script.output_tokens
        delta["usage"] = usage
    await _send(resp, "message_delta", delta)
    if not script.omit_terminal:
        await _send(resp, "message_stop", {"type": "message_stop"})
    await resp.write_eof()


async def _send(resp: web.StreamResponse, event: str, data: dict[str, Any]) -> None:
    await resp.write(f"event: {event}\ndata: {_dumps(data)}\n\n".encode())



def _dumps(data: Any) -> str:
    return orjson.dumps(data).decode()


def _id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")
