"""The portal with its front door removed, for bench_frontdoor's side-by-side "before".

Not a way to run the portal: it exists so the bench can measure what the guarded header
parser and the body limits cost, against the same app without them.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

import backend.frontdoor.server as server
import backend.main as main


class _NoBodyLimits:
    def __init__(self, app: ASGIApp, **_: object) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _unguarded(config: object, limits: object) -> str:
    return "httptools, unguarded (bench)"


server._guard_headers = _unguarded  # type: ignore[assignment]
main.BodyLimits = _NoBodyLimits  # type: ignore[assignment, misc]
app = main.create_app()
