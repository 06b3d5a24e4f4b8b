"""A pure ASGI middleware: stamps each request's id and receipt time, and puts the
rate-limit decision, the budget's remaining USD and X-Request-ID on whatever response
goes out (success, SSE, error).

Pure ASGI rather than BaseHTTPMiddleware so streamed bodies pass through untouched.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestContextMiddleware:
    """Sets `request.state.request_id` / `received_at`; adds headers on response start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap `send` so the response start carries the request's headers."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["received_at"] = time.perf_counter()
        request_id = uuid.uuid4().hex
        state["request_id"] = request_id

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                decision = state.get("rate_limit")
                if decision is not None:
                    headers.extend(decision.headers())
                budget = state.get("budget")
                if budget is not None and (pair := budget.header()) is not None:
                    headers.append(pair)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
