"""Keep the server from choosing the client address: TRUSTED_PROXIES alone decides.

uvicorn wraps every app in its ProxyHeadersMiddleware unless started with
`--no-proxy-headers`, and by default trusts 127.0.0.1 and ::1 (`--forwarded-allow-ips`,
env FORWARDED_ALLOW_IPS). For a trusted peer it rewrites `scope["client"]` from
X-Forwarded-For before the app sees the request, and the real peer is then lost. So with
`python -m uvicorn backend.main:app`, anything connecting from the same host (a local
script, a sidecar, another tenant of the machine) could pick its own rate-limit key by
sending the header, whatever TRUSTED_PROXIES says.

The app cannot see the socket, so it removes the rewriting instead. uvicorn's lifespan
handler (LifespanOn, which holds the server's Config) awaits the app during start-up, so it
is on the call stack when the lifespan scope arrives; and uvicorn's protocols read
`config.loaded_app` for each new connection, and connections only open after start-up. So
at start-up this middleware unwraps uvicorn's proxy-header layer, the app sees the real
socket peer, and applies TRUSTED_PROXIES itself (right-most untrusted X-Forwarded-For hop).
This covers `python -m uvicorn`, `--workers`, `--reload`, `uvicorn.run()` and gunicorn's
uvicorn worker alike. Under any other server nothing is changed.
"""

from __future__ import annotations

import logging
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from uvicorn.config import Config

log = logging.getLogger(__name__)


class ServerProxyHeadersOff:
    """Pure ASGI middleware: on lifespan start-up, undo uvicorn's X-Forwarded-For rewriting."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.outcome: str | None = None  # what start-up found (for logs and tests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass every scope through; the lifespan one first switches the rewriting off."""
        if scope["type"] == "lifespan" and self.outcome is None:
            self.outcome = disable_uvicorn_proxy_headers(receive)
        await self.app(scope, receive, send)


def disable_uvicorn_proxy_headers(receive: Any) -> str:
    """Remove uvicorn's proxy-header layer from the server running this app.

    Returns "removed", "off" (uvicorn ran with --no-proxy-headers) or "not-uvicorn".
    Raises RuntimeError when uvicorn rewrites addresses in a way this code cannot undo,
    because serving then would let local clients choose their rate-limit key.
    """
    try:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
    except ImportError:  # pragma: no cover - uvicorn is a dependency
        return "not-uvicorn"
    config = _uvicorn_config(receive)
    if config is None:
        return "not-uvicorn"
    if not config.proxy_headers:
        return "off"
    outer = config.loaded_app
    if not isinstance(outer, ProxyHeadersMiddleware):
        raise RuntimeError(
            "uvicorn rewrites client addresses from X-Forwarded-For and this version cannot "
            "be told not to; start it with --no-proxy-headers (TRUSTED_PROXIES applies anyway)"
        )
    config.loaded_app = outer.app
    config.proxy_headers = False
    log.info(
        "uvicorn's X-Forwarded-For rewriting (forwarded-allow-ips %s) is off for this app: "
        "TRUSTED_PROXIES decides which peers may name the client",
        config.forwarded_allow_ips,
    )
    return "removed"


def _uvicorn_config(receive: Any) -> Config | None:
    """The Config of the uvicorn server whose lifespan handler is starting this app."""
    from uvicorn.lifespan.on import LifespanOn

    # Plain uvicorn hands its own bound method as `receive`; frameworks may wrap it (FastAPI
    # does), so otherwise look for the handler among the coroutines awaiting this one.
    owner = getattr(receive, "__self__", None)
    frame: FrameType | None = sys._getframe(1)
    while not isinstance(owner, LifespanOn) and frame is not None:
        owner = frame.f_locals.get("self")
        frame = frame.f_back
    return owner.config if isinstance(owner, LifespanOn) else None
