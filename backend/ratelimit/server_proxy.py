"""Keep the server from choosing the client address: TRUSTED_PROXIES alone decides.

uvicorn wraps every app in its ProxyHeadersMiddleware unless started with
`--no-proxy-headers`, and by default trusts 127.0.0.1 and ::1 (`--forwarded-allow-ips`,
env FORWARDED_ALLOW_IPS). For a trusted peer it rewrites `scope["client"]` from
X-Forwarded-For before the app sees the request, and the real peer is then lost. So with
`python -m uvicorn backend.main:app`, anything connecting from the same host (a local
script, a sidecar, another tenant of the machine) could pick its own rate-limit key by
sending the header, whatever TRUSTED_PROXIES says.

The app cannot see the socket, so it removes the rewriting instead: at start-up
(`backend/frontdoor/server.py` finds the running server's Config) it unwraps uvicorn's
proxy-header layer; uvicorn's protocols read `config.loaded_app` for each new connection,
and connections only open after start-up, so the app sees the real socket peer and applies
TRUSTED_PROXIES itself (right-most untrusted X-Forwarded-For hop).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uvicorn.config import Config

log = logging.getLogger(__name__)


def disable_uvicorn_proxy_headers(config: Config) -> str:
    """Remove uvicorn's proxy-header layer from the server running this app.

    Returns "removed" or "off" (uvicorn ran with --no-proxy-headers).
    Raises RuntimeError when uvicorn rewrites addresses in a way this code cannot undo,
    because serving then would let local clients choose their rate-limit key.
    """
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

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
