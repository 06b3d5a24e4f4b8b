"""ServerHardening under a server it cannot tune: it says what a reverse proxy must bound."""

from __future__ import annotations

import logging

import pytest
from starlette.types import Message, Receive, Scope, Send

from backend.frontdoor.server import ServerHardening, ServerLimits

LIMITS = ServerLimits(max_header_bytes=32_768, header_timeout=10.0, max_message_bytes=2_465_536)


async def test_a_server_that_is_not_uvicorn_gets_a_warning_naming_the_proxy_bounds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:  # a plain function: no uvicorn LifespanOn behind it
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        pass

    hardening = ServerHardening(app, limits=LIMITS)
    with caplog.at_level(logging.WARNING, logger="backend.frontdoor.server"):
        await hardening({"type": "lifespan"}, receive, send)
        await hardening({"type": "lifespan"}, receive, send)  # a second scope: no repeat
    assert hardening.outcome == "not-uvicorn"
    assert seen == ["lifespan", "lifespan"]  # the app is still served
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = warning.getMessage()
    assert "not served by uvicorn" in text and "reverse proxy" in text
    for bound in ("32768 bytes", "within 10 s", "2465536 bytes", "client_header_timeout"):
        assert bound in text, bound
