"""uvicorn's httptools protocol with a bound on request headers: size and time.

uvicorn installs httptools (its `[standard]` extra) and then picks it over h11, but sets it
no header limit: httptools concatenates each header's pieces as they arrive (one new bytes
object per read), so one client sending a 64 MiB header costs quadratic time on the event
loop, and every other client waits (7.5 s for 64 MiB, 34.5 s for 128 MiB, measured). A
client may also open a connection and send its headers a byte at a time, or nothing, for
ever. h11, uvicorn's other parser, refuses headers over 16 KiB, but parses everything in
Python, at a cost in requests per second.

So this subclass keeps httptools and adds what it lacks:
- the bytes of a request's line and headers are counted as they arrive; past
  MAX_HEADER_BYTES the request is answered 431 and the connection closed, before the parser
  is fed more (so the parser never holds more than the cap plus one socket read);
- headers still incomplete HEADER_READ_TIMEOUT_SECONDS after their first byte (or after the
  connection opened) get 408 and the connection is closed.
The common request arrives whole in one read and arms no timer at all.

Refusals are a lingering close (as in backend/frontdoor/body.py): the answer is written and
the sending side shut, then what the client still sends is dropped for LINGER_SECONDS
before the socket closes, so the client reads the answer instead of a connection reset.
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from backend.frontdoor.body import LINGER_BYTES, LINGER_SECONDS

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a header size cap and a header read deadline."""

    max_header_bytes = 32_768
    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True
        self._header_bytes = 0
        self._header_timer: TimerHandle | None = None
        self._upgraded = False  # handed to the WebSocket protocol: no longer ours to guard
        self._dropping: int | None = None  # after a refusal: bytes dropped while lingering

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock: a connection that never sends a request is closed too."""
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the timer with the connection."""
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count header bytes; refuse once they pass the cap."""
        if self._dropping is not None:
            self._dropping += len(data)
            if self._dropping > LINGER_BYTES:
                self.transport.close()
            return
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._awaiting_headers and not self._upgraded and self._dropping is None:
            if self._header_bytes > self.max_header_bytes:
                self._refuse(431, "headers_too_large",
                             f"request headers over {self.max_header_bytes} bytes")
            elif self._header_timer is None:
                self._arm_header_timer()

    def on_headers_complete(self) -> None:
        """The headers are in: stop counting and stop the clock."""
        self._awaiting_headers = False
        self._cancel_header_timer()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        """The connection becomes a WebSocket: its bytes are frames now, not headers."""
        self._upgraded = True
        self._awaiting_headers = False
        self._cancel_header_timer()
        super().handle_websocket_upgrade()

    def on_message_complete(self) -> None:
        """The request is in: what comes next is the next request's headers."""
        super().on_message_complete()
        self._awaiting_headers = True
        self._header_bytes = 0

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._awaiting_headers and not self._upgraded and self._dropping is None:
            self._refuse(408, "header_read_timeout",
                         f"request headers did not arrive within {self.header_timeout:g} s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._cancel_header_timer()
        self.logger.warning("refused a request from %s: %s", _peer(self.client), message)
        body = orjson.dumps({"error": code, "message": message})
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n"
        ) % (status, _REASONS[status], len(body))
        self.transport.write(head + body)
        self._dropping = 0
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown peer"


def guarded_httptools(*, max_header_bytes: int, header_timeout: float) -> type[HttpToolsProtocol]:
    """The guarded protocol class with these bounds (uvicorn builds one per connection)."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"max_header_bytes": max_header_bytes, "header_timeout": header_timeout},
    )
