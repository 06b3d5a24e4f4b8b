"""/chat/ws with the browser's session cookie: the portal's own page chats over it; a page
from another origin that the browser would send the cookie from is refused."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from backend.tests.auth.signin import SESSION_COOKIE, Browser, signin_portal
from backend.tests.transports.conftest import answer, receive, usage_rows
from backend.tests.usage.portal import Portal, chat_body

CHAT = orjson.dumps(chat_body("demo", "Hello over the socket")).decode()


def _ws_url(portal: Portal) -> str:
    return portal.url.replace("http://", "ws://", 1) + "/chat/ws"


async def _signed_in(portal: Portal, client: httpx.AsyncClient) -> dict[str, str]:
    browser = Browser(client, portal.url)
    await browser.sign_in()
    return {"Cookie": f"{SESSION_COOKIE}={browser.session}"}


async def test_a_cookie_socket_from_the_portals_own_page_chats(tmp_path: Path) -> None:
    async with signin_portal(tmp_path) as (portal, _op), httpx.AsyncClient() as c:
        cookie = await _signed_in(portal, c)
        # No Authorization header and no auth message: the cookie alone identifies it.
        async with connect(
            _ws_url(portal), origin=portal.url, additional_headers=cookie
        ) as ws:
            await ws.send(CHAT)
            chunks, final = await answer(ws)
            assert final["is_final"] is True, final
            assert "".join(c["content"] for c in chunks)
            await ws.send(CHAT)  # a second turn on the same socket
            _, second = await answer(ws)
            assert second["is_final"] is True, second
        rows = await usage_rows(portal, 2)
        assert [r["auth_method"] for r in rows] == ["session", "session"]
        assert all(r["success"] for r in rows)


@pytest.mark.parametrize("origin", ["https://evil.example", None])
async def test_a_cookie_socket_from_another_origin_is_refused(
    tmp_path: Path, origin: str | None
) -> None:
    async with signin_portal(
        tmp_path, allowed_origins=["https://evil.example"]
    ) as (portal, _op), httpx.AsyncClient() as c:
        cookie = await _signed_in(portal, c)
        # Even an origin listed in ALLOWED_ORIGINS (for bearer-token front ends) may not
        # ride on the cookie; nor may a client that sends no Origin at all.
        async with connect(
            _ws_url(portal), origin=origin, additional_headers=cookie
        ) as ws:
            refusal = await receive(ws)
            assert refusal["type"] == "error" and refusal["error"] == "csrf_refused", refusal
            assert refusal["status"] == 403
        assert ws.close_code == 1008 and ws.close_reason == "csrf_refused"
        assert portal.fakes["openai"].requests == []
        assert await usage_rows(portal, 0, settle=0.1) == []


async def test_a_foreign_origin_not_in_allowed_origins_fails_the_handshake(
    tmp_path: Path,
) -> None:
    async with signin_portal(tmp_path) as (portal, _op), httpx.AsyncClient() as c:
        cookie = await _signed_in(portal, c)
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                _ws_url(portal), origin="https://evil.example",
                additional_headers=cookie,
            ):
                pass
        assert refused.value.response.status_code == 403
