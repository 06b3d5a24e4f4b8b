"""One dict lookup for the chat routes, ahead of the router's walk over every route.

FastAPI finds a route by trying each in turn, and an included router is a branch it walks
again for the route it picked: with the docs' routes first and a dozen routers after them,
/v1/chat/completions (in a router nested in another) cost about 8 % of its CPU in matching
alone, /chat/send 3 %. The chat routes have fixed paths, so `ExactPaths` sends a request
for one of them straight to the route's own handler, as the router would once it had
matched it. Anything else (another path, another method, a path under a `root_path`) goes
to the router, unchanged, so its answers (404, 405, slash redirects) stay FastAPI's.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send


class ExactPaths:
    """An ASGI layer in front of a router: fixed-path routes by their path, the rest on."""

    def __init__(self, app: ASGIApp, router: object, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self.router = router
        self.table: dict[str, APIRoute] = {}
        for route in routes:
            if not isinstance(route, APIRoute) or route.param_convertors or (
                route.path in self.table
            ):
                raise ValueError(f"not a fixed path of its own: {route}")
            self.table[route.path] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A matched route's handler with the scope keys the router would set; else the router."""
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self.table.get(scope["path"])
            if route is not None and scope["method"] in (route.methods or ()):
                scope.setdefault("router", self.router)
                scope["endpoint"] = route.endpoint
                scope["path_params"] = {}
                scope["route"] = route
                await route.app(scope, receive, send)
                return
        await self.app(scope, receive, send)
