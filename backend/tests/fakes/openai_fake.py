"""A fake OpenAI Chat Completions server speaking the real wire format.

Shapes follow what the official SDK parses (openai/types/chat/chat_completion.py,
chat_completion_chunk.py, completion_usage.py) and how it reads a stream
(openai/_streaming.py: `data:` frames, a `{"error": ...}` frame raises, `[DONE]` ends).
It is also the upstream of a load benchmark, so every response is a handful of
`orjson.dumps` calls and, when `Script.chunk_delay` is 0, writes that never sleep.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiohttp import web

from backend.tests.fakes.script import FakeState, RecordedRequest, Script
from backend.tests.fakes.server import cut, serve

API_KEY = "test-openai-key"
PATH = "/v1/chat/completions"

# The o-series and gpt-5 family refuse `max_tokens` and any non-default temperature.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_KEY_HELP = "You can find your API key at https://platform.openai.com/account/api-keys."
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization"
    " header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password"
    " field (with blank username) if you're accessing the API from your browser and are"
    " prompted for a username and password. You can obtain an API key from"
    " https://platform.openai.com/account/api-keys."
)
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't"
    " using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was"
    " sent was not valid JSON.)"
)
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_JSON = "application/json"
_COMMON_HEADERS = {"openai-version": "2020-10-01", "openai-processing-ms": "1"}
_SSE_HEADERS = {
    **_COMMON_HEADERS,
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
}
_DONE = b"data: [DONE]\n\n"
_FINGERPRINT = "fp_fake0001"
_ids = itertools.count(1)


def build_app(state: FakeState, *, require_auth: bool = True) -> web.Application:
    """The fake's application; `require_auth=False` plays a keyless compatible server."""

    async def chat_completions(request: web.Request) -> web.StreamResponse:
        return await _handle(request, state, require_auth)

    app = web.Application()
    app.router.add_post(PATH, chat_completions)
    return app


@asynccontextmanager
async def start(
    script: Script | None = None, *, require_auth: bool = True
) -> AsyncIterator[tuple[str, FakeState]]:
    """Serve the fake; yield (base URL ending in /v1, as OPENAI_BASE_URL does, state)."""
    state = FakeState(script=script or Script())
    async with serve(build_app(state, require_auth=require_auth)) as base:
        yield f"{base}/v1", state


async def _handle(request: web.Request, state: FakeState, require_auth: bool) -> web.StreamResponse:
    raw = await request.read()
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    headers = {name.lower(): value for name, value in request.headers.items()}
    state.requests.append(
        RecordedRequest(request.method, request.path, dict(request.query), headers, body)
    )
    script = state.script
    if script.first_byte_delay:
        await asyncio.sleep(script.first_byte_delay)
    key = _bearer(headers.get("authorization"))
    if require_auth and key != API_KEY:
        return _auth_error(key)
    if state.should_fail():
        return _scripted_error(script, key)
    if not isinstance(body, dict):
        return error_response(400, _BAD_JSON, "invalid_request_error")
    invalid = _validate(body)
    if invalid is not None:
        return invalid
    model = script.model or body["model"]
    if body.get("stream"):
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage")) and not script.omit_usage
        return await _stream(request, state, _stream_frames(script, model, include_usage))
    return await _complete(request, script, model)


def error_response(
    status: int, message: str, kind: str, *, param: str | None = None, code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error in OpenAI's JSON shape: {"error": {message, type, param, code}}."""
    error = {"message": message, "type": kind, "param": param, "code": code}
    return web.Response(
        status=status, body=orjson.dumps({"error": error}), content_type=_JSON,
        headers={**_COMMON_HEADERS, **(headers or {})},
    )


def mask_key(key: str) -> str:
    """The key as OpenAI echoes it in a 401: first 8 and last 4 characters, stars between."""
    if len(key) <= 12:
        return key
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _auth_error(key: str | None) -> web.Response:
    if key is None:
        return error_response(401, _NO_KEY, "invalid_request_error")
    return error_response(
        401, f"Incorrect API key provided: {mask_key(key)}. {_KEY_HELP}",
        "invalid_request_error", code="invalid_api_key",
    )


def _scripted_error(script: Script, key: str | None) -> web.Response:
    status = script.error_status or 500
    if status == 401:
        return _auth_error(key)
    headers: dict[str, str] = {}
    if script.retry_after is not None:
        headers["retry-after"] = script.retry_after
    if status == 429:
        reset = f"{script.retry_after or 1}s"
        headers.update({
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-limit-tokens": "30000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-requests": reset,
            "x-ratelimit-reset-tokens": reset,
        })
        return error_response(
            429, script.error_message, "requests", code="rate_limit_exceeded", headers=headers
        )
    if status >= 500:
        return error_response(status, script.error_message, "server_error", headers=headers)
    code = {403: "unsupported_country_region_territory", 404: "model_not_found"}.get(status)
    return error_response(
        status, script.error_message, "invalid_request_error", code=code, headers=headers
    )


def _validate(body: dict[str, Any]) -> web.Response | None:
    """The checks the real API makes that our adapter could plausibly get wrong."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return error_response(400, "you must provide a model parameter", "invalid_request_error")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error_response(
            400, "Missing required parameter: 'messages'.", "invalid_request_error",
            param="messages", code="missing_required_parameter",
        )
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            return error_response(
                400, f"Invalid value: '{role}'. Supported values are: 'system', 'assistant',"
                " 'user', 'function', 'tool', and 'developer'.", "invalid_request_error",
                param=f"messages[{index}].role", code="invalid_value",
            )
    if model.startswith(_REASONING_PREFIXES):
        return _validate_reasoning(body)
    return None


def _validate_reasoning(body: dict[str, Any]) -> web.Response | None:
    if "max_tokens" in body:
        return error_response(
            400, "Unsupported parameter: 'max_tokens' is not supported with this model."
            " Use 'max_completion_tokens' instead.", "invalid_request_error",
            param="max_tokens", code="unsupported_parameter",
        )
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        return error_response(
            400, f"Unsupported value: 'temperature' does not support {temperature} with this"
            " model. Only the default (1) value is supported.", "invalid_request_error",
            param="temperature", code="unsupported_value",
        )
    return None


def _usage(script: Script) -> dict[str, Any]:
    return {
        "prompt_tokens": script.input_tokens,
        "completion_tokens": script.output_tokens,
        "total_tokens": script.input_tokens + script.output_tokens,
        "prompt_tokens_details": {"cached_tokens": script.cached_input_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": script.reasoning_tokens, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
        },
    }


def _completion_body(script: Script, model: str) -> bytes:
    if script.error_with_200:
        # What some proxies answer once the upstream failed after they sent the 200.
        return orjson.dumps({"error": _error_object(script)})
    # A refusal: content null and the refusal text instead (ChatCompletionMessage).
    content = None if script.refusal is not None else "".join(script.chunks) or None
    message: dict[str, Any] = {
        "role": "assistant", "content": content, "refusal": script.refusal,
        "annotations": [],
    }
    finish = script.stop_reason or "stop"
    body: dict[str, Any] = {
        "id": f"chatcmpl-fake{next(_ids)}", "object": "chat.completion",
        "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "service_tier": "default", "system_fingerprint": _FINGERPRINT,
    }
    if not script.omit_usage:
        body["usage"] = _usage(script)
    return orjson.dumps(body)


async def _complete(request: web.Request, script: Script, model: str) -> web.StreamResponse:
    body = _completion_body(script, model)
    if script.cut_after_chunks is None:
        return web.Response(body=body, content_type=_JSON, headers=_COMMON_HEADERS)
    # A connection lost mid-body: promise the full length, send half, hang up.
    response = web.StreamResponse(headers={**_COMMON_HEADERS, "Content-Type": _JSON})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    cut(request, response)
    return response


def _stream_frames(script: Script, model: str, include_usage: bool) -> list[bytes]:
    """Every frame of a successful stream, encoded: role, one per text chunk, finish, usage."""
    head: dict[str, Any] = {
        "id": f"chatcmpl-fake{next(_ids)}", "object": "chat.completion.chunk",
        "created": int(time.time()), "model": model, "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }

    def frame(choices: list[Any], usage: dict[str, Any] | None = None) -> bytes:
        chunk = {**head, "choices": choices}
        if include_usage:  # only then does every chunk carry a `usage` key (null until the end)
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[Any]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    frames = [frame(choice({"role": "assistant", "content": "", "refusal": None}))]
    # vLLM / DeepSeek stream reasoning as `reasoning_content` deltas before the answer.
    frames.extend(frame(choice({"reasoning_content": part})) for part in script.thinking)
    if script.refusal is not None:  # streamed as `delta.refusal`, content staying null
        half = len(script.refusal) // 2
        parts = (script.refusal[:half], script.refusal[half:])
        frames.extend(frame(choice({"refusal": part})) for part in parts)
    else:
        frames.extend(frame(choice({"content": text})) for text in script.chunks)
    frames.append(frame(choice({}, script.stop_reason or "stop")))
    if include_usage:
        frames.append(frame([], _usage(script)))
    return frames


def _error_object(script: Script) -> dict[str, Any]:
    return {
        "message": script.error_message, "type": script.stream_error_kind or "server_error",
        "param": None, "code": script.stream_error_code,
    }


def _stream_error_frame(script: Script) -> bytes:
    return b"data: " + orjson.dumps({"error": _error_object(script)}) + b"\n\n"


async def _stream(
    request: web.Request, state: FakeState, frames: list[bytes]
) -> web.StreamResponse:
    script = state.script
    # frames[0] is the role chunk, so "after N text chunks" means after frames[N].
    stop_at = len(frames)
    if script.cut_after_chunks is not None:
        stop_at = 1 + script.cut_after_chunks
    elif script.stream_error_after is not None:
        stop_at = 1 + script.stream_error_after
    delay = script.chunk_delay
    response = web.StreamResponse(headers=_SSE_HEADERS)
    with state.streaming():
        await response.prepare(request)
        for frame in frames[:stop_at]:
            if delay:
                await asyncio.sleep(delay)
            await response.write(frame)
        if script.cut_after_chunks is not None:
            cut(request, response)
            return response
        if script.stream_error_after is not None:
            await response.write(_stream_error_frame(script))
        elif not script.omit_terminal:
            await response.write(_DONE)
        await response.write_eof()
    return response

