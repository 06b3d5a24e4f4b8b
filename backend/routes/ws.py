"""WebSocket chat at /chat/ws: the /chat/stream conversation, many turns per connection.

Framing, one JSON text message per object (docs/transports.md):
- client -> server: the /chat/stream request body.
- server -> client: the SSE stream's objects, unchanged, plus a `type` holding the SSE
  event name: `{"type": "message", ...chunk}` for each piece of text, then the final chunk
  (`is_final: true`, usage, cost, provider, request_id); or one `{"type": "error", ...}`
  with the SSE error event's data plus `status` (what HTTP would have answered) and, when
  waiting helps, `retry_after` in seconds.
Messages are answered one at a time, in the order sent; each gets exactly one final
chunk or one error, takes one rate-limit token and produces at most one usage record.
A bad message gets an error and the connection stays open.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, status
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected

from backend.api.deps import Services, count_refusal, request_context, take_rate_limit_token
from backend.api.errors import problems, status_for
from backend.chat.schemas import ChatRequest
from backend.chat.service import ChatStream, close_events
from backend.chat.sse import error_data, final_chunk, text_chunk
from backend.errors import InvalidRequest, PortalError
from backend.observability import logs
from backend.providers.base import TextDelta
from backend.ratelimit.base import RateDecision

log = logging.getLogger(__name__)

router = APIRouter(tags=["chat"])

_Gone = (WebSocketDisconnect, WebSocketDisconnected)


class TooManyPending(PortalError):
    """The client queued more messages behind the answer in progress than allowed."""

    code = "too_many_pending_messages"


@router.websocket("/chat/ws")
async def chat_ws(websocket: WebSocket) -> None:
    """Chat over a WebSocket: send request bodies, receive the SSE stream's chunk objects."""
    services: Services = websocket.app.state.services
    if not origin_allowed(websocket.headers.get("origin"), services.settings.allowed_origins):
        # Closing before accepting refuses the handshake: the client gets HTTP 403.
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
        return
    await websocket.accept()
    await ChatSocket(websocket, services).serve()


def origin_allowed(origin: str | None, allowed: Sequence[str]) -> bool:
    """Browsers always send Origin, so one not in ALLOWED_ORIGINS is refused; clients that
    send none (scripts, servers) are not browsers a hostile page could drive, and pass."""
    if origin is None:
        return True
    if "*" in allowed:
        return True
    wanted = origin.rstrip("/").lower()
    return any(wanted == entry.rstrip("/").lower() for entry in allowed)


@dataclass(frozen=True, slots=True)
class _Incoming:
    payload: str | bytes
    received_at: float  # time.perf_counter(): latency runs from here, queueing included


class ChatSocket:
    """One accepted connection: a reader that queues messages, a worker that answers them."""

    def __init__(self, websocket: WebSocket, services: Services) -> None:
        self._ws = websocket
        self._services = services
        self._inbox: asyncio.Queue[_Incoming] = asyncio.Queue(
            maxsize=services.settings.ws_max_pending_messages
        )
        self._send_lock = asyncio.Lock()

    async def serve(self) -> None:
        """Run until the client goes; then cancel the answer in progress.

        Cancelling the worker cancels the upstream request at once, and the chat service
        records the interaction as `client_disconnected`.
        """
        worker = asyncio.create_task(self._answer_in_order(), name="ws-chat-worker")
        try:
            await self._read()
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    async def _read(self) -> None:
        # Reading goes on while an answer streams, so a disconnect is seen at once.
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            payload: str | bytes = text if text is not None else message.get("bytes") or b""
            try:
                self._inbox.put_nowait(_Incoming(payload, time.perf_counter()))
            except asyncio.QueueFull:
                refused = TooManyPending(
                    f"more than {self._inbox.maxsize} messages are waiting; wait for an "
                    "answer (its final chunk or error) before sending more"
                )
                self._services.metrics.chat_refused("ws", None, "rate_limited")
                try:
                    await self._send(error_message(refused, uuid.uuid4().hex, status=429))
                except _Gone:
                    return

    async def _answer_in_order(self) -> None:
        while True:
            incoming = await self._inbox.get()
            try:
                await self._turn(incoming)
            except _Gone:
                return  # the reader sees the disconnect too, and ends the session

    async def _turn(self, incoming: _Incoming) -> None:
        """Answer one message; every failure becomes an error message on the same socket."""
        request_id = uuid.uuid4().hex
        logs.request_id.set(request_id)  # this message's lines carry its own id
        self._ws.state.chat_context = None  # this turn's, once built
        try:
            try:
                await self._answer(incoming, request_id)
            except BaseException as exc:
                count_refusal(self._ws, self._services.metrics, "ws", exc)
                raise
        except PortalError as exc:
            await self._send(error_message(exc, request_id))
        except ValidationError as exc:
            await self._send(invalid_body_message(exc, request_id))
        except _Gone:
            raise
        except Exception:
            log.exception("WebSocket chat message %s failed", request_id)
            await self._send(
                {"type": "error", "error": "internal_error", "message": "internal error",
                 "request_id": request_id, "status": 500}
            )

    async def _answer(self, incoming: _Incoming, request_id: str) -> None:
        data = _parse(incoming.payload)
        specialist = data.get("specialist_id") if isinstance(data, dict) else None
        # One token per message, taken before the body is validated (as on HTTP).
        decision = await take_rate_limit_token(
            self._ws, self._services, specialist if isinstance(specialist, str) else None
        )
        refusal = decision.refusal()
        if refusal is not None:
            raise refusal
        if data is _INVALID_JSON:
            raise InvalidRequest("the message is not valid JSON")
        body = ChatRequest.model_validate(data)
        context = request_context(
            self._ws, decision, request_id=request_id, received_at=incoming.received_at,
            transport="ws",
        )
        chat = self._services.chat.prepare(body, context=context)
        await self._relay(await self._services.chat.open_stream(chat))

    async def _relay(self, stream: ChatStream) -> None:
        # If this task is cancelled while sending, the stream must still end (and be
        # recorded) now, not whenever the garbage collector finalises the generator.
        events = stream.events()
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    await self._send({"type": "message", **text_chunk(event.text)})
        finally:
            await close_events(events)
        record = stream.record
        assert record is not None  # events() records in its finally, before we get here
        await self._send({"type": "message", **final_chunk(record)})

    async def _send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await self._ws.send_text(orjson.dumps(message).decode())


_INVALID_JSON = object()


def _parse(payload: str | bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return _INVALID_JSON


def error_message(
    exc: PortalError, request_id: str, *, status: int | None = None
) -> dict[str, Any]:
    """An error as the SSE error event's data, plus `type`, `status` and `retry_after`."""
    message: dict[str, Any] = {
        "type": "error", **error_data(exc, request_id), "status": status or status_for(exc),
    }
    retry_after = _retry_after(exc)
    if retry_after is not None:
        message["retry_after"] = retry_after
    return message


def invalid_body_message(exc: ValidationError, request_id: str) -> dict[str, Any]:
    """A body that is not a chat request: the fields at fault, never the input echoed."""
    return {
        "type": "error", "error": "invalid_request", "message": "the message body is not valid",
        "detail": problems(exc.errors()), "request_id": request_id, "status": 422,
    }


def _retry_after(exc: PortalError) -> int | None:
    # Whole seconds, as the Retry-After header would say on HTTP.
    decision = getattr(exc, "decision", None)
    if isinstance(decision, RateDecision):
        return decision.retry_after_seconds
    seconds = getattr(exc, "retry_after", None)
    if isinstance(seconds, int | float):
        return max(1, math.ceil(seconds))
    return None
