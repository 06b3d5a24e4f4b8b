"""A fake Gemini API (generativelanguage.googleapis.com) in its real wire format.

Routes: POST /{version}/models/{model}:generateContent and :streamGenerateContent, with
`?alt=sse` for SSE frames ending in CRLF CRLF, without it a streamed JSON array (as the
real API does). Every frame is a whole GenerateContentResponse with modelVersion and
responseId; usageMetadata is the running total, complete on the last frame, which alone
carries finishReason. Errors are google.rpc.Status bodies. Auth is checked the way Google
does: no key is 403 PERMISSION_DENIED, a wrong key is 400 INVALID_ARGUMENT with reason
API_KEY_INVALID. The key is read from `x-goog-api-key` or, as Google also accepts, `?key=`.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from backend.tests.fakes.script import FakeState, RecordedRequest, Script
from backend.tests.fakes.server import cut, serve

API_KEY = "test-google-key"
VERSIONS = ("v1", "v1beta", "v1alpha")
RESPONSE_ID = "fakeResp-7Qm2ZbTtC4yHk"

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED", 500: "INTERNAL", 501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_UNREGISTERED = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_KEY_INVALID = "API key not valid. Please pass a valid API key."


@dataclass
class GoogleScript(Script):
    """Script plus what only Gemini has; a plain `Script` gets these defaults."""

    thoughts: list[str] = field(default_factory=list)  # thought-summary parts before the answer
    thoughts_tokens: int = 0
    finish_reason: str = "STOP"  # e.g. "SAFETY" (with chunks=[]) for a withheld answer
    block_reason: str | None = None  # a blocked prompt: 200, promptFeedback, no candidates
    # The contract's Retry-After header; the real API only sends the body's RetryInfo.
    retry_after_header: bool = True
    # The first N hops end with finishReason CONTINUATION and a continuationToken; each
    # sends `continuation_text` and bills the script's usage, the last hop the chunks.
    continuation_hops: int = 0
    continuation_text: str = "Part one. "
    # The in-stream error as the API writes a failing stream's google.rpc.Status: bare,
    # pretty-printed JSON outside the SSE framing (which the SDK rebuilds line by line).
    status_outside_sse: bool = False


def continuation_token(hop: int) -> str:
    """The token hop `hop` (from 1) resumes from: base64 bytes, as the API sends them."""
    return base64.b64encode(f"fake-hop-{hop}".encode()).decode()


def hop_of(body: Any) -> int:
    """Which hop a request is: 0 without a token, else the token's number."""
    token = body.get("continuationToken") if isinstance(body, dict) else None
    if not token:
        return 0
    return int(base64.b64decode(token).decode().removeprefix("fake-hop-"))


_DEFAULTS = GoogleScript()


def _extra(script: Script) -> GoogleScript:
    return script if isinstance(script, GoogleScript) else _DEFAULTS


def build_app(state: FakeState) -> web.Application:
    """The fake's routes, answering per `state.script` and recording into `state.requests`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        state.requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.query),
                {k.lower(): v for k, v in request.headers.items()}, body,
            )
        )
        resource, _, method = request.match_info["target"].rpartition(":")
        if (
            request.match_info["version"] not in VERSIONS
            or not resource.startswith("models/")
            or method not in ("generateContent", "streamGenerateContent")
        ):
            return error_response(404, f"{resource} is not found or does not support {method}.")
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return error_response(403, _UNREGISTERED)
        if key != API_KEY:
            return error_response(400, _KEY_INVALID, details=_key_invalid_details())
        if body is None:
            return error_response(400, "Invalid JSON payload received.")
        script = state.script
        if script.first_byte_delay:
            await asyncio.sleep(script.first_byte_delay)
        if state.should_fail():
            return _scripted_error(script)
        model = script.model or resource.removeprefix("models/")
        extra = _extra(script)
        hop = hop_of(body)
        if hop < extra.continuation_hops:
            # Not the last hop: its own text, then CONTINUATION with the next hop's token.
            script = GoogleScript(
                chunks=[extra.continuation_text], input_tokens=script.input_tokens,
                output_tokens=script.output_tokens, finish_reason="CONTINUATION",
                model=script.model,
            )
            token = continuation_token(hop + 1)
        else:
            token = None
        if method == "generateContent":
            return await _complete(request, script, model, token=token)
        return await _stream(
            request, state, model, sse=request.query.get("alt") == "sse", script=script,
            token=token,
        )

    app = web.Application()
    app.router.add_post("/{version}/{target:.+}", handle)
    return app


@asynccontextmanager
async def start(script: Script | None = None) -> AsyncIterator[tuple[str, FakeState]]:
    """Serve the fake; yield (base URL without version, as GOOGLE_BASE_URL takes it, state)."""
    state = FakeState(script=script or Script())
    async with serve(build_app(state)) as base_url:
        yield base_url, state


def error_response(
    status: int, message: str, *, details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A google.rpc.Status error body, pretty-printed as Google sends it."""
    error: dict[str, Any] = {
        "code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")
    }
    if details:
        error["details"] = details
    return web.Response(
        status=status, body=orjson.dumps({"error": error}, option=orjson.OPT_INDENT_2),
        content_type="application/json", charset="UTF-8", headers=headers,
    )


def _key_invalid_details() -> list[dict[str, Any]]:
    return [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        },
        {
            "@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
            "message": _KEY_INVALID,
        },
    ]


def _scripted_error(script: Script) -> web.Response:
    status = script.error_status or 500
    details: list[dict[str, Any]] = []
    headers: dict[str, str] = {}
    if status == 429:
        details.append({
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{
                "quotaMetric": (
                    "generativelanguage.googleapis.com/generate_content_free_tier_requests"
                ),
                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            }],
        })
        if script.retry_after is not None:
            details.append({
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{script.retry_after}s",
            })
            if _extra(script).retry_after_header:
                headers["Retry-After"] = script.retry_after
    return error_response(status, script.error_message, details=details, headers=headers)


def _usage(script: Script, output: int) -> dict[str, Any]:
    # proto3 JSON leaves out zero counts, as the real API does.
    extra = _extra(script)
    usage: dict[str, Any] = {"promptTokenCount": script.input_tokens}
    if output:
        usage["candidatesTokenCount"] = output
    usage["totalTokenCount"] = script.input_tokens + output + extra.thoughts_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": script.input_tokens}]
    if script.cached_input_tokens:
        usage["cachedContentTokenCount"] = script.cached_input_tokens
        usage["cacheTokensDetails"] = [
            {"modality": "TEXT", "tokenCount": script.cached_input_tokens}
        ]
    if extra.thoughts_tokens:
        usage["thoughtsTokenCount"] = extra.thoughts_tokens
    return usage


def _response(
    script: Script, model: str, parts: list[dict[str, Any]], *, output: int, final: bool,
    token: str | None = None,
) -> dict[str, Any]:
    extra = _extra(script)
    data: dict[str, Any] = {}
    if extra.block_reason:
        data["promptFeedback"] = {"blockReason": extra.block_reason}
    else:
        candidate: dict[str, Any] = {}
        if parts:
            candidate["content"] = {"parts": parts, "role": "model"}
        if final and not script.omit_terminal:
            candidate["finishReason"] = extra.finish_reason
            if token is not None:
                candidate["continuationToken"] = token
        candidate["index"] = 0
        data["candidates"] = [candidate]
    if not script.omit_usage:
        data["usageMetadata"] = _usage(script, output)
    data["modelVersion"] = model
    data["responseId"] = RESPONSE_ID
    return data


async def _complete(
    request: web.Request, script: Script, model: str, *, token: str | None = None
) -> web.StreamResponse:
    parts: list[dict[str, Any]] = []
    if _extra(script).thoughts:
        parts.append({"text": "".join(_extra(script).thoughts), "thought": True})
    if script.chunks:
        parts.append({"text": "".join(script.chunks)})
    body = orjson.dumps(
        # No answer text, no candidate tokens: as the stream's single frame says too.
        _response(
            script, model, parts, output=script.output_tokens if script.chunks else 0,
            final=True, token=token,
        ),
        option=orjson.OPT_INDENT_2,
    )
    if script.cut_after_chunks is None:
        return web.Response(body=body, content_type="application/json", charset="UTF-8")
    # A body cut short: the declared length promises more than ever arrives.
    resp = web.StreamResponse(headers={"Content-Type": "application/json; charset=UTF-8"})
    resp.content_length = len(body)
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    cut(request, resp)
    return resp


def _frames(
    script: Script, model: str, token: str | None = None
) -> list[tuple[bool, dict[str, Any]]]:
    """(is_answer_text, frame) in order: thought parts first, then the answer's chunks."""
    frames: list[tuple[bool, dict[str, Any]]] = [
        (False, _response(script, model, [{"text": t, "thought": True}], output=0, final=False))
        for t in _extra(script).thoughts
    ]
    count = len(script.chunks)
    for i, text in enumerate(script.chunks):
        running = script.output_tokens * (i + 1) // count
        final = i == count - 1
        frame = _response(
            script, model, [{"text": text}], output=running, final=final, token=token
        )
        frames.append((True, frame))
    if not count:
        frames.append((False, _response(script, model, [], output=0, final=True)))
    return frames


async def _stream(
    request: web.Request, state: FakeState, model: str, *, sse: bool, script: Script,
    token: str | None,
) -> web.StreamResponse:
    content_type = "text/event-stream" if sse else "application/json; charset=UTF-8"
    resp = web.StreamResponse(headers={"Content-Type": content_type})
    with state.streaming():
        await resp.prepare(request)
        if await _write_frames(request, resp, script, model, sse=sse, token=token):
            if not sse:
                await resp.write(b"]")
            await resp.write_eof()
    return resp


async def _write_frames(
    request: web.Request, resp: web.StreamResponse, script: Script, model: str, *, sse: bool,
    token: str | None = None,
) -> bool:
    """Write frames up to the scripted fault, one write each; False when the socket was cut."""
    answered = written = 0
    # The trailing sentinel lets a fault land after the last answer chunk too.
    for is_answer, frame in [*_frames(script, model, token), (True, None)]:
        if is_answer and answered == script.cut_after_chunks:
            cut(request, resp)
            return False
        if is_answer and answered == script.stream_error_after:
            if sse and _extra(script).status_outside_sse:
                error = orjson.dumps(_stream_error(script), option=orjson.OPT_INDENT_2)
                await resp.write(error + b"\n")
                return True
            await resp.write(_encode(_stream_error(script), sse=sse, first=not written))
            return True
        if frame is None:
            return True
        if written and script.chunk_delay:
            await asyncio.sleep(script.chunk_delay)
        await resp.write(_encode(frame, sse=sse, first=not written))
        written += 1
        answered += is_answer
    return True


def _stream_error(script: Script) -> dict[str, Any]:
    code = script.stream_error_code if isinstance(script.stream_error_code, int) else 500
    error: dict[str, Any] = {
        "code": code, "message": script.error_message,
        "status": _STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if code == 429 and script.retry_after is not None:
        error["details"] = [{
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": f"{script.retry_after}s",
        }]
    return {"error": error}


def _encode(frame: dict[str, Any], *, sse: bool, first: bool) -> bytes:
    if sse:
        return b"data: " + orjson.dumps(frame) + b"\r\n\r\n"
    return (b"[" if first else b",\r\n") + orjson.dumps(frame, option=orjson.OPT_INDENT_2)

