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

What one client can make a worker hold is bounded: WS_MAX_CONNECTIONS_PER_CLIENT open
sockets per address (one more is refused at the handshake, 403); a message over
MAX_REQUEST_BYTES closes the socket (1009); the queue behind the answer in progress holds
at most WS_MAX_PENDING_MESSAGES messages and MAX_REQUEST_BYTES bytes; a socket with no
message and no answer in progress for WS_IDLE_TIMEOUT_SECONDS is closed (1000).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, status
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected

from backend.api.deps import Services, count_refusal, request_context, take_rate_limit_token
from backend.api.errors import problems, status_for
from backend.auth.errors import TokenInvalid
from backend.auth.identity import Identity
from backend.auth.socket import auth_token, authenticate_socket, close_at_expiry
from backend.chat.schemas import ChatRequest
from backend.chat.sse import error_data, final_chunk, text_chunk
from backend.chat.stream import ChatStream, close_events
from backend.errors import InvalidRequest, PortalError
from backend.observability import logs
from backend.providers.base import TextDelta
from backend.ratelimit.base import RateDecision
from backend.usage.ids import new_id

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
    if not _origin_admitted(websocket, services):
        # Closing before accepting refuses the handshake: the client gets HTTP 403.
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
        return
    client = services.rate_limits.client_ip(
        websocket.client.host if websocket.client else None,
        websocket.headers.getlist("x-forwarded-for"),
    )
    with services.ws_clients.hold(client) as admitted:
        if not admitted:
            log.warning(
                "refused a WebSocket from %s: %d open already (WS_MAX_CONNECTIONS_PER_CLIENT)",
                client, services.ws_clients.limit,
            )
            await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
            return
        await websocket.accept()
        try:
            identity = await authenticate_socket(websocket, services.auth)
        except PortalError as exc:
            await refuse(websocket, exc)
            return
        except _Gone:
            return
        if identity is not None:
            await ChatSocket(websocket, services, identity).serve()


async def refuse(websocket: WebSocket, exc: PortalError) -> None:
    """Tell the client why (an error message with its HTTP status), then close 1008."""
    try:
        await websocket.send_text(orjson.dumps(error_message(exc, new_id())).decode())
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason=exc.code)
    except _Gone:
        pass


def _origin_admitted(websocket: WebSocket, services: Services) -> bool:
    """ALLOWED_ORIGINS, and with browser sign-in the portal's own page too: its socket
    carries the session cookie, and the session then checks the origin again exactly."""
    origin = websocket.headers.get("origin")
    if origin_allowed(origin, services.settings.allowed_origins):
        return True
    sessions = services.auth.sessions
    return (
        sessions is not None and origin is not None
        and origin.rstrip("/").lower() == sessions.own_origin(websocket)
    )


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
    size: int  # bytes on the wire
    received_at: float  # time.perf_counter(): latency runs from here, queueing included


class ChatSocket:
    """One accepted connection: a reader that queues messages, a worker that answers them."""

    def __init__(self, websocket: WebSocket, services: Services, identity: Identity) -> None:
        self._ws = websocket
        self._services = services
        settings = services.settings
        self._identity = identity
        self._expiry: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[_Incoming] = asyncio.Queue(
            maxsize=settings.ws_max_pending_messages
        )
        self._max_bytes = settings.request_byte_cap()
        self._idle_timeout = settings.ws_idle_timeout_seconds
        self._pending_bytes = 0  # of the messages queued behind the answer in progress
        self._answering = False
        self._send_lock = asyncio.Lock()

    async def serve(self) -> None:
        """Run until the client goes; then cancel the answer in progress.

        Cancelling the worker cancels the upstream request at once, and the chat service
        records the interaction as `client_disconnected`.
        """
        worker = asyncio.create_task(self._answer_in_order(), name="ws-chat-worker")
        self._watch_expiry()
        try:
            await self._read()
        finally:
            worker.cancel()
            if self._expiry is not None:
                self._expiry.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    def _watch_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = None
        if self._identity.expires_at is not None:
            self._expiry = asyncio.create_task(
                close_at_expiry(self._identity.expires_at, self._refuse),
                name="ws-auth-expiry",
            )

    async def _refuse(self, exc: PortalError) -> None:
        async with self._send_lock:
            await refuse(self._ws, exc)

    async def _reauthenticate(self, token: object) -> None:
        # {"type": "auth", "token": ...} mid-session: a fresh token before the old expires.
        try:
            identity = await self._services.auth.identify(
                self._ws, token=token if isinstance(token, str) else ""
            )
            if identity.user_hash != self._identity.user_hash:
                raise TokenInvalid("a refreshed token must be for the same user")
            self._identity = identity
        except PortalError as exc:
            await self._refuse(exc)
            return
        self._watch_expiry()
        await self._send({"type": "auth", "ok": True, "expires_at": self._identity.expires_at})

    async def _read(self) -> None:
        # Reading goes on while an answer streams, so a disconnect is seen at once.
        while True:
            try:
                async with asyncio.timeout(self._idle_timeout):
                    message = await self._ws.receive()
            except TimeoutError:
                if self._answering or not self._inbox.empty():
                    continue  # a long answer is not idleness
                await self._close(status.WS_1000_NORMAL_CLOSURE, "idle timeout")
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            payload: str | bytes = text if text is not None else message.get("bytes") or b""
            size = _wire_size(payload)
            if size > self._max_bytes:
                # The server already refuses these (ws_max_size); this holds on any server.
                await self._close(status.WS_1009_MESSAGE_TOO_BIG, "message too big")
                return
            token = auth_token(payload)
            if token is not None:
                try:
                    await self._reauthenticate(token)
                except _Gone:
                    return
                continue
            if not await self._enqueue(_Incoming(payload, size, time.perf_counter())):
                return

    async def _enqueue(self, incoming: _Incoming) -> bool:
        """Queue a message behind the answer in progress, or refuse it; False once gone."""
        if self._pending_bytes + incoming.size <= self._max_bytes:
            try:
                self._inbox.put_nowait(incoming)
            except asyncio.QueueFull:
                pass
            else:
                self._pending_bytes += incoming.size
                return True
        refused = TooManyPending(
            f"more than {self._inbox.maxsize} messages or {self._max_bytes} bytes are "
            "waiting; wait for an answer (its final chunk or error) before sending more"
        )
        self._services.metrics.chat_refused("ws", None, "rate_limited")
        try:
            await self._send(error_message(refused, new_id(), status=429))
        except _Gone:
            return False
        return True

    async def _close(self, code: int, reason: str) -> None:
        try:
            await self._ws.close(code=code, reason=reason)
        except (*_Gone, RuntimeError):  # the client went first
            pass

    async def _answer_in_order(self) -> None:
        while True:
            incoming = await self._inbox.get()
            self._pending_bytes -= incoming.size
            self._answering = True
            try:
                await self._turn(incoming)
            except _Gone:
                return  # the reader sees the disconnect too, and ends the session
            finally:
                self._answering = False

    async def _turn(self, incoming: _Incoming) -> None:
        """Answer one message; every failure becomes an error message on the same socket."""
        request_id = new_id()
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
            self._ws, self._services, self._identity,
            specialist if isinstance(specialist, str) else None,
        )
        refusal = decision.refusal()
        if refusal is not None:
            raise refusal
        if data is _INVALID_JSON:
            raise InvalidRequest("the message is not valid JSON")
        body = ChatRequest.model_validate(data)
        context = request_context(
            self._ws, self._identity, decision, request_id=request_id,
            received_at=incoming.received_at, transport="ws",
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


def _wire_size(payload: str | bytes) -> int:
    if isinstance(payload, bytes) or payload.isascii():
        return len(payload)
    return len(payload.encode())


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
