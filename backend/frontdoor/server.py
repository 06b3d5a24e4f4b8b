"""Make the server that runs the app safe, however it was started.

The README's command is `python -m uvicorn backend.main:app`, with no flags, and that must be
safe by itself. uvicorn's defaults are not: no header size limit with httptools (the parser
its `[standard]` extra installs and prefers), no deadline on headers, WebSocket messages up
to 16 MiB, and X-Forwarded-For believed from 127.0.0.1. The app cannot pass flags to the
server that imported it, but it can reach the server's Config at start-up: uvicorn's
lifespan handler (LifespanOn, which holds the Config) awaits the app during start-up, so it
is on the call stack when the lifespan scope arrives; and uvicorn reads the Config's
protocol classes, limits and `loaded_app` for each new connection, and connections only open
after start-up. This covers `python -m uvicorn`, `--workers`, `--reload`, `uvicorn.run()`
and gunicorn's uvicorn worker alike. Under any other server nothing is changed (and the
README says what a reverse proxy in front must then bound).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from backend.ratelimit.server_proxy import disable_uvicorn_proxy_headers

if TYPE_CHECKING:
    from uvicorn.config import Config

log = logging.getLogger(__name__)

# The legacy `websockets` protocol queues this many whole messages per connection before it
# stops reading (uvicorn's default is 32); the default sans-I/O one holds one at a time.
WS_MAX_QUEUE = 2


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What the server must bound before the app sees a request."""

    max_header_bytes: int
    header_timeout: float
    max_message_bytes: int  # one WebSocket message (MAX_REQUEST_BYTES)


class ServerHardening:
    """Pure ASGI middleware: on lifespan start-up, tighten the uvicorn server running it."""

    def __init__(self, app: ASGIApp, *, limits: ServerLimits) -> None:
        self.app = app
        self.limits = limits
        self.outcome: str | None = None  # what start-up did (for logs and tests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass every scope through; the lifespan one first tightens the server."""
        if scope["type"] == "lifespan" and self.outcome is None:
            config = running_uvicorn_config(receive)
            if config is None:
                self.outcome = "not-uvicorn"
                warn_not_uvicorn(self.limits)
            else:
                disable_uvicorn_proxy_headers(config)
                self.outcome = apply_limits(config, self.limits)
        await self.app(scope, receive, send)


def warn_not_uvicorn(limits: ServerLimits) -> None:
    """Say, once at start-up, what the server in use leaves to a reverse proxy."""
    # Bodies stay bounded (BodyLimits is ASGI middleware), but the header parser and the
    # WebSocket reader belong to the server, which the app can only reach under uvicorn.
    log.warning(
        "not served by uvicorn: the app cannot bound this server's header parser or "
        "WebSocket reader. A reverse proxy in front must bound request headers to %d bytes "
        "(nginx: large_client_header_buffers) arriving within %g s (client_header_timeout), "
        "and WebSocket messages to %d bytes (the app closes a larger one with 1009, but only "
        "after the server has read it); request bodies stay bounded by the app",
        limits.max_header_bytes, limits.header_timeout, limits.max_message_bytes,
    )


def apply_limits(config: Config, limits: ServerLimits) -> str:
    """Bound headers and WebSocket messages on this server; returns the HTTP parser's name."""
    config.ws_max_size = min(config.ws_max_size, limits.max_message_bytes)
    config.ws_max_queue = min(config.ws_max_queue, WS_MAX_QUEUE)
    parser = _guard_headers(config, limits)
    log.info(
        "server limits: headers %d bytes within %g s (%s), WebSocket messages %d bytes",
        limits.max_header_bytes, limits.header_timeout, parser, config.ws_max_size,
    )
    return parser


def _guard_headers(config: Config, limits: ServerLimits) -> str:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    protocol = config.http_protocol_class
    if protocol is _httptools_protocol():
        from backend.frontdoor.httptools_guard import guarded_httptools

        config.http_protocol_class = guarded_httptools(
            max_header_bytes=limits.max_header_bytes, header_timeout=limits.header_timeout
        )
        return "httptools, guarded"
    if protocol is H11Protocol:
        # h11 bounds header size itself (16 KiB by default); give it ours.
        config.h11_max_incomplete_event_size = limits.max_header_bytes
        return "h11"
    log.warning(
        "uvicorn runs HTTP protocol %s, which the app cannot bound: put a reverse proxy with "
        "a header size limit and a header read timeout in front", protocol,
    )
    return f"unguarded {getattr(protocol, '__name__', protocol)}"


def _httptools_protocol() -> type | None:
    try:  # httptools is optional for uvicorn; without it uvicorn runs h11
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None
    return HttpToolsProtocol


def running_uvicorn_config(receive: Any) -> Config | None:
    """The Config of the uvicorn server whose lifespan handler is starting this app."""
    try:
        from uvicorn.lifespan.on import LifespanOn
    except ImportError:  # pragma: no cover - uvicorn is a dependency
        return None
    # Plain uvicorn hands its own bound method as `receive`; frameworks may wrap it (FastAPI
    # does), so otherwise look for the handler among the coroutines awaiting this one.
    owner = getattr(receive, "__self__", None)
    frame: FrameType | None = sys._getframe(1)
    while not isinstance(owner, LifespanOn) and frame is not None:
        owner = frame.f_locals.get("self")
        frame = frame.f_back
    return owner.config if isinstance(owner, LifespanOn) else None
