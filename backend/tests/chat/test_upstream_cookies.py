"""The upstream session keeps no cookies: what one answer sets never rides on the next call."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from backend.tests.chat.conftest import SPECIALISTS
from backend.tests.fakes import openai_fake
from backend.tests.fakes.script import FakeState, Script
from backend.tests.fakes.server import serve


async def test_a_cookie_an_upstream_sets_is_not_sent_back(portal_factory: Any) -> None:
    state = FakeState(script=Script())
    app = openai_fake.build_app(state)

    @web.middleware
    async def set_cookie(request: web.Request, handler: Any) -> web.StreamResponse:
        # What a provider's load balancer does (Cloudflare's __cf_bm on api.openai.com).
        response: web.StreamResponse = await handler(request)
        response.set_cookie("lb", "pinned-to-alice", path="/")
        return response

    app.middlewares.append(set_cookie)
    async with serve(app) as base:
        # By name: aiohttp's default jar ignores cookies from a bare IP address.
        local = base.replace("127.0.0.1", "localhost")
        portal = await portal_factory(openai_base_url=f"{local}/v1")
        for user in ("alice", "bob"):
            response = await portal.client.post(
                "/chat/send", json={"specialist_id": SPECIALISTS["openai"], "message": user}
            )
            assert response.status_code == 200, response.text
    assert len(state.requests) == 2
    assert "set-cookie" not in {name.lower() for name in response.headers}
    assert [r.headers.get("cookie") for r in state.requests] == [None, None]
