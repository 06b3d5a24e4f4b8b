"""The portal with its front door removed: the "before" of bench_frontdoor and bench_attacks.

Not a way to run the portal: it exists so the benches can measure, against the same app,
what the front door costs and what it stops. Removed here, and only here:
- the guarded httptools parser (header size and time bounds) and the body limits
  (MAX_REQUEST_BYTES, BODY_READ_TIMEOUT_SECONDS);
- the WebSocket bounds: uvicorn's own message size and queue stay at its defaults (16 MiB,
  32 messages), the app's byte cap on queued messages, the per-client socket cap and the
  idle timeout are lifted;
- the throttle on failed admin authentications (each is still logged).
Everything else (routes, limiter, usage records) is the shipped app.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

import backend.frontdoor.server as server
import backend.main as main
import backend.ratelimit.factory as ratelimit_factory
from backend.ratelimit.failures import FailureThrottle

UNBOUNDED = 2**40


class _NoBodyLimits:
    def __init__(self, app: ASGIApp, **_: object) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class _NeverThrottled(FailureThrottle):
    def retry_after(self, client: str) -> float | None:
        return None


def _unguarded(config: object, limits: object) -> str:
    return "httptools, unguarded (bench)"


server._guard_headers = _unguarded
# apply_limits takes min(uvicorn's value, ours): with ours unbounded, uvicorn's defaults stay.
server.WS_MAX_QUEUE = UNBOUNDED
main.BodyLimits = _NoBodyLimits  # type: ignore[attr-defined, assignment]
ratelimit_factory.FailureThrottle = _NeverThrottled  # type: ignore[attr-defined]
app = main.create_app(main.load_settings().model_copy(update={
    "max_request_bytes": UNBOUNDED,
    "ws_max_connections_per_client": UNBOUNDED,
    "ws_idle_timeout_seconds": float(UNBOUNDED),
}))
