"""A pure ASGI middleware: stamps each request's id and receipt time, and puts the
rate-limit decision, the budget's remaining USD and X-Request-ID on whatever response
goes out (success, SSE, error). With JSON logs it also writes each request's access line,
once its last byte is sent.

Pure ASGI rather than BaseHTTPMiddleware so streamed bodies pass through untouched.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.observability import logs
from backend.usage.ids import new_id


class RequestContextMiddleware:
    """Sets `request.state.request_id` / `received_at`; adds headers on response start."""

    def __init__(self, app: ASGIApp, *, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap `send` so the response start carries the request's headers."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["received_at"] = received_at = time.perf_counter()
        request_id = new_id()
        state["request_id"] = request_id
        logs.request_id.set(request_id)  # every line this request causes carries it
        status = [500]  # what went out; 500 if the app raised before answering

        async def send_with_headers(message: Message) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status[0] = message["status"]
            elif kind == "websocket.accept":
                status[0] = 101
            elif kind == "websocket.close" and status[0] == 500:
                status[0] = 403  # closed before accepting: the handshake was refused
            if kind == "http.response.start":
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

        if not self.access_log:
            await self.app(scope, receive, send_with_headers)
            return
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            transport = state.get("transport") or (
                "ws" if scope["type"] == "websocket" else "http"
            )
            logs.log_access(
                method=scope.get("method", "GET"), path=scope["path"], status=status[0],
                received_at=received_at, rid=request_id, transport=transport,
            )
