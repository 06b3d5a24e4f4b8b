"""Identity on /chat/ws: the Authorization header, or a first {"type": "auth"} message
within the time allowed; never the URL; an expiring token closes the socket, saying why."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from backend.auth import socket as auth_socket
from backend.tests.auth.conftest import bearer
from backend.tests.auth.idp import IdP
from backend.tests.chat.conftest import SPECIALISTS, Portal
from backend.tests.transports.conftest import answer, receive, usage_rows, ws_url

CHAT = orjson.dumps({"specialist_id": SPECIALISTS["openai"], "message": "Hello"}).decode()


def _auth(token: str) -> str:
    return orjson.dumps({"type": "auth", "token": token}).decode()


async def _closed(ws: Any) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        while True:
            await receive(ws)
    return ws.close_code, ws.close_reason


async def test_the_authorization_header_identifies_the_socket(
    idp: IdP, jwt_portal: Portal
) -> None:
    token = idp.token(cost_center="CC-1")
    async with connect(ws_url(jwt_portal), additional_headers=bearer(token)) as ws:
        await ws.send(CHAT)
        _, final = await answer(ws)
    assert final["is_final"] is True
    rows = await usage_rows(jwt_portal, 1)
    assert (rows[0]["auth_method"], rows[0]["cost_center"]) == ("jwt", "CC-1")


async def test_a_first_auth_message_identifies_the_socket(idp: IdP, jwt_portal: Portal) -> None:
    async with connect(ws_url(jwt_portal)) as ws:
        await ws.send(_auth(idp.token()))
        await ws.send(CHAT)
        _, final = await answer(ws)
    assert final["is_final"] is True and len(jwt_portal.fakes["openai"].requests) == 1


@pytest.mark.parametrize("first", ["garbage", "chat", "silence", "token in the url"])
async def test_a_socket_without_a_good_first_message_is_closed_with_a_reason(
    first: str, idp: IdP, jwt_portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth_socket, "AUTH_TIMEOUT_SECONDS", 0.5)
    url = ws_url(jwt_portal)
    if first == "token in the url":
        url += f"?token={idp.token()}&access_token={idp.token()}"
    async with connect(url) as ws:
        if first == "garbage":
            await ws.send(_auth("not-a-token"))
        elif first == "chat":
            await ws.send(CHAT)
        error = await receive(ws)
        code, _ = await _closed(ws)
    assert error["type"] == "error" and error["status"] == 401
    assert error["error"] == ("token_invalid" if first == "garbage" else "token_missing")
    assert code == 1008
    assert jwt_portal.fakes["openai"].requests == []


async def test_an_expiring_token_closes_the_socket_unless_refreshed(
    idp: IdP, jwt_portal: Portal
) -> None:
    async with connect(ws_url(jwt_portal)) as ws:
        await ws.send(_auth(idp.token(exp=int(time.time()) + 2)))
        await ws.send(_auth(idp.token(exp=int(time.time()) + 3)))  # a refresh: still open
        assert (await receive(ws))["type"] == "auth"
        await ws.send(CHAT)
        _, final = await answer(ws)
        assert final["is_final"] is True
        started = time.monotonic()
        error = await receive(ws)
        code, reason = await _closed(ws)
    assert error["error"] == "token_expired" and "expired" in error["message"]
    assert (code, reason) == (1008, "token_expired")
    assert time.monotonic() - started < 5


async def test_a_refresh_for_another_user_or_a_bad_header_token_closes_the_socket(
    idp: IdP, jwt_portal: Portal
) -> None:
    async with connect(ws_url(jwt_portal)) as ws:
        await ws.send(_auth(idp.token(sub="alice", email="alice@example.com")))
        await ws.send(_auth(idp.token(sub="mallory", email="mallory@example.com")))
        error = await receive(ws)
        code, _ = await _closed(ws)
    assert (error["error"], error["status"], code) == ("token_invalid", 401, 1008)
    async with connect(ws_url(jwt_portal), additional_headers=bearer("not.a.jwt")) as ws:
        error = await receive(ws)
        code, _ = await _closed(ws)
    assert (error["error"], code) == ("token_invalid", 1008)
    assert jwt_portal.fakes["openai"].requests == []
