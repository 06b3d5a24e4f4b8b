"""One dict lookup for the chat routes, ahead of the router's walk over every route.

FastAPI finds a route by trying each in turn, and an included router is a branch it walks
again for the route it picked: with the docs' routes first and a dozen routers after them,
/v1/chat/completions (in a router nested in another) cost about 8 % of its CPU in matching
alone, /chat/send 3 %. The chat routes have fixed paths, so `ExactPaths` sends a request
for one of them straight to the route's own handler, as the router would once it had
matched it. Anything else (another path, another method, a path under a `root_path`) goes
to the router, unchanged, so its answers (404, 405, slash redirects) stay FastAPI's.

A route whose handler is the lean one (`api/handler.py`) is also spared FastAPI's per-request
wrapper: two AsyncExitStacks (for dependencies with `yield` and uploaded files, which it does
not have) and a second exception-handling layer. Its exceptions reach ExceptionMiddleware,
one layer up, which answers them with the same handlers.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send


class ExactPaths:
    """An ASGI layer in front of a router: fixed-path routes by their path, the rest on."""

    def __init__(self, app: ASGIApp, router: object, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self.router = router
        self.table: dict[str, tuple[APIRoute, ASGIApp]] = {}
        for route in routes:
            if not isinstance(route, APIRoute) or route.param_convertors or (
                route.path in self.table
            ):
                raise ValueError(f"not a fixed path of its own: {route}")
            self.table[route.path] = (route, _direct(route) or route.app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A matched route's handler with the scope keys the router would set; else the router."""
        if scope["type"] == "http" and not scope.get("root_path"):
            entry = self.table.get(scope["path"])
            if entry is not None and scope["method"] in (entry[0].methods or ()):
                route, app = entry
                scope.setdefault("router", self.router)
                scope["endpoint"] = route.endpoint
                scope["path_params"] = {}
                scope["route"] = route
                await app(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _direct(route: APIRoute) -> ASGIApp | None:
    """The route as a plain ASGI app, when its handler is the lean one and it has no body
    limit of FastAPI's own (the portal bounds bodies in its own middleware); else None."""
    handler = getattr(route, "lean_entry", None)
    if handler is None or getattr(route, "max_body_size", None) is not None:
        return None

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await handler(Request(scope, receive, send))
        await response(scope, receive, send)

    return app
