"""POST /chat/send and POST /chat/stream: parse, call the chat service, return."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import StreamingResponse

from backend.api.deps import ChatContextDep, RateLimitedRoute, ServicesDep
from backend.chat.schemas import ChatRequest, ChatResponse, ErrorBody
from backend.chat.sse import SSEResponse, sse_frames
from backend.resilience.disconnect import unless_disconnected

router = APIRouter(prefix="/chat", tags=["chat"], route_class=RateLimitedRoute)

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (404, "Unknown or disabled specialist"),
        (413, "Message, history or conversation over its limit"),
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
async def send(
    body: ChatRequest, services: ServicesDep, context: ChatContextDep, request: Request
) -> ChatResponse:
    """Send one message to a specialist and wait for the whole answer."""
    chat = services.chat.prepare(body, context=context)
    return await unless_disconnected(request.receive, services.chat.send(chat))


@router.post(
    "/stream",
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
    response_class=StreamingResponse,
)
async def stream(
    body: ChatRequest, services: ServicesDep, context: ChatContextDep, request: Request
) -> StreamingResponse:
    """Stream the answer as Server-Sent Events: `message` events, then a final one."""
    chat = services.chat.prepare(body, context=context)
    opened = await unless_disconnected(request.receive, services.chat.open_stream(chat))
    return SSEResponse(
        sse_frames(opened), keepalive=services.settings.sse_keepalive_seconds,
        headers=SSE_HEADERS,
    )
