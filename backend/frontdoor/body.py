"""Bounded request bodies: a byte cap and a deadline, enforced before anything buffers them.

Starlette and FastAPI read a body whole before parsing it, and uvicorn hands over every byte
the client sends; so without this a 200 MB POST is held (several times over, while it is
joined and decoded) before the character limits can refuse it, and a client that declares
`Content-Length: 100` and trickles one byte a second holds its request open forever.

This pure ASGI middleware reads the body itself, before routing:
- a declared `Content-Length` over MAX_REQUEST_BYTES is answered 413 without reading a byte;
- a chunked body is counted as it arrives and refused the moment it passes the cap, so no
  more than the cap (plus one read) is ever held;
- the whole body must arrive within BODY_READ_TIMEOUT_SECONDS of the request, or 408;
then hands the application the body in one message and the server's own `receive` after it
(so disconnects are still seen). Refusals close the connection (the unread rest of the body
cannot be skipped safely) and take no rate-limit token: refusing costs nothing.

A 413 is a lingering close, as nginx does it: the whole answer is written first, then what
the client is still sending is read and dropped for a moment (LINGER_SECONDS, at most
LINGER_BYTES) before the connection closes. Closing a socket with unread data in it sends
a TCP reset, and a reset makes the client's system drop the answer it had not read yet:
without the linger, a client still uploading sees "connection reset", never the 413.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.errors import refusal_response
from backend.errors import BodyReadTimeout, BodyTooLarge, PortalError

# A refused upload's unread rest is drained (and dropped) this long, and this much at most.
LINGER_SECONDS = 1.0
LINGER_BYTES = 16 * 1024 * 1024


class _ClientGone(Exception):
    """The client disconnected while its body was being read: nobody to answer."""


class BodyLimits:
    """Pure ASGI middleware: cap and deadline on every HTTP request body."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, read_timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read and check the body, then call the app with it (or refuse)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared == 0:  # no body (a GET, an empty POST): nothing to bound
            await self.app(scope, receive, send)
            return
        try:
            if declared is not None and declared > self.max_bytes:
                raise self._too_large()
            body = await self._read(receive)
        except _ClientGone:
            return
        except PortalError as exc:
            await self._refuse(exc, scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.read_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large()
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise BodyReadTimeout(
                f"the request body did not arrive within {self.read_timeout:g} s "
                "(BODY_READ_TIMEOUT_SECONDS)"
            ) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(
            f"the request body is over {self.max_bytes} bytes (MAX_REQUEST_BYTES)"
        )

    async def _refuse(self, exc: PortalError, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = scope.get("state", {}).get("request_id")
        response = refusal_response(
            exc, path=scope["path"], method=scope["method"], request_id=request_id
        )
        await send({
            "type": "http.response.start", "status": response.status_code,
            "headers": response.raw_headers,
        })
        # The whole answer goes out now; the response only ends (and the server closes the
        # connection) after the linger.
        await send({"type": "http.response.body", "body": response.body, "more_body": True})
        if isinstance(exc, BodyTooLarge):
            await _drain(receive)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _drain(receive: Receive) -> None:
    """Read and drop what the client still sends, briefly (see LINGER_SECONDS)."""
    dropped = 0
    try:
        async with asyncio.timeout(LINGER_SECONDS):
            while dropped < LINGER_BYTES:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
                dropped += len(message.get("body", b""))
    except TimeoutError:
        return


def _declared_length(scope: Scope) -> int | None:
    """Content-Length as declared; 0 when the request has no body; None when chunked."""
    length: int | None = 0
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:  # the HTTP parser refuses these; treat as "count as it comes"
                return None
        elif name == b"transfer-encoding":
            return None
    return length


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the read body once, then the server's own messages."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
