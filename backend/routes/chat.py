"""POST /chat/send and POST /chat/stream: parse, call the chat service, return."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from backend.api.deps import ChatCallDep, RateLimitedRoute
from backend.chat.schemas import ChatRequest, ChatResponse, ErrorBody
from backend.chat.sse import SSEResponse, sse_frames
from backend.resilience.disconnect import unless_disconnected

router = APIRouter(prefix="/chat", tags=["chat"], route_class=RateLimitedRoute)

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Body not parseable as JSON: invalid UTF-8 or nested too deeply"),
        (404, "Unknown or disabled specialist"),
        (408, "The body did not arrive within BODY_READ_TIMEOUT_SECONDS"),
        (413, "Body over MAX_REQUEST_BYTES, or message, history or conversation over its limit"),
        (415, "Content-Type is not application/json"),
        (422, "Malformed body"),
        (429, "Rate limit exceeded (see Retry-After)"),
        (502, "The provider failed or rejected the call"),
        (503, "Provider not configured, unavailable or rate limited"),
        (504, "The provider timed out"),
    )
}

# Proxies (nginx and friends) must pass SSE through as it is written.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post("/send", response_model=ChatResponse, responses=_ERRORS)
async def send(body: ChatRequest, call: ChatCallDep, request: Request) -> Response:
    """Send one message to a specialist and wait for the whole answer."""
    service = call.services.chat
    chat = service.prepare(body, context=call.context)
    answer = await unless_disconnected(request.receive, service.send(chat))
    # Our own typed object, encoded directly: no second validation pass by the framework.
    return Response(orjson.dumps(answer.model_dump()), media_type="application/json")


@router.post(
    "/stream",
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
    response_class=StreamingResponse,
)
async def stream(body: ChatRequest, call: ChatCallDep, request: Request) -> StreamingResponse:
    """Stream the answer as Server-Sent Events: `message` events, then a final one."""
    services = call.services
    chat = services.chat.prepare(body, context=call.context)
    opened = await unless_disconnected(request.receive, services.chat.open_stream(chat))
    return SSEResponse(
        sse_frames(opened), keepalive=services.settings.sse_keepalive_seconds,
        headers=SSE_HEADERS,
    )
