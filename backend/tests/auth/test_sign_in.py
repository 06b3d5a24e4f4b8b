"""Browser sign-in, server side: the code flow with PKCE against a fake provider, the session
cookie on the chat endpoints, refresh, sign-out, expiry, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth.session_table import web_sessions
from backend.tests.auth.oidc_op import CLIENT_ID
from backend.tests.auth.signin import SESSION_COOKIE, Browser, set_cookies, signin_portal
from backend.tests.usage.conftest import database_url
from backend.tests.usage.helpers import eventually
from backend.tests.usage.portal import chat_body
from backend.usage.table import usage_log

__all__ = ["database_url"]


async def _sessions(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(
            select(func.count()).select_from(web_sessions)
        )).scalar_one())


async def test_a_signed_in_browser_chats_with_its_cookie(
    tmp_path: Path, database_url: str
) -> None:
    async with signin_portal(tmp_path, database_url) as (portal, _op), httpx.AsyncClient() as c:
        browser = Browser(c, portal.url)
        await browser.sign_in()
        me = (await browser.request("GET", "/me")).json()
        assert me["name"] == "Alice Example" and me["email"] == "alice@example.com"
        assert me["auth_method"] == "session" and me["groups"] == ["staff"]
        csrf = await browser.csrf()
        sent = await browser.post("/chat/send", csrf=csrf, json=chat_body("demo"))
        assert sent.status_code == 200, sent.text
        budget = await browser.request("GET", "/me/budget")
        assert budget.status_code == 200

        async def recorded() -> bool:
            async with portal.engine.connect() as conn:
                methods = (await conn.execute(select(usage_log.c.auth_method))).scalars().all()
            return methods == ["session"]

        await eventually(recorded)
        assert await _sessions(portal.engine) == 1


async def test_the_flow_uses_s256_pkce_and_the_registered_redirect(tmp_path: Path) -> None:
    async with signin_portal(tmp_path) as (portal, op), httpx.AsyncClient() as c:
        browser = Browser(c, portal.url)
        _, authorization = await browser.start_login()
        query = parse_qs(urlsplit(authorization).query)
        assert query["code_challenge_method"] == ["S256"]
        assert query["redirect_uri"] == [f"{portal.url}/auth/callback"]
        assert query["response_type"] == ["code"] and "openid" in query["scope"][0].split()
        assert len(query["state"][0]) >= 43 and len(query["nonce"][0]) >= 43
        await browser.sign_in()
        exchange = next(r for r in op.token_requests if r["grant_type"] == "authorization_code")
        assert 43 <= len(exchange["code_verifier"]) <= 128


async def test_cookie_flags(tmp_path: Path) -> None:
    async with signin_portal(tmp_path) as (portal, _op), httpx.AsyncClient() as c:
        browser = Browser(c, portal.url)
        login = await browser.request("GET", "/auth/login")
        signed = await browser.sign_in()
        for response, name in ((login, "__Host-portal_login"), (signed, SESSION_COOKIE)):
            morsel = set_cookies(response)[name]
            assert morsel["httponly"] is True and morsel["secure"] is True
            assert morsel["samesite"].lower() == "lax" and morsel["path"] == "/"
            assert not morsel["domain"]
        # The login cookie is spent by the callback.
        assert set_cookies(signed)["__Host-portal_login"]["max-age"] == "0"


async def test_in_development_the_cookie_is_not_secure(tmp_path: Path) -> None:
    async with signin_portal(tmp_path, environment="development") as (portal, _op), \
            httpx.AsyncClient() as c:
        response = await Browser(c, portal.url).request("GET", "/auth/login")
        morsel = set_cookies(response)["portal_login"]
        assert morsel["httponly"] is True and not morsel["secure"]
        assert morsel["samesite"].lower() == "lax"


async def test_tokens_are_refreshed_before_they_expire_one_refresh_at_a_time(
    tmp_path: Path
) -> None:
    # 30 s tokens are inside the 60 s margin: every request refreshes, with a rotating
    # refresh token that the provider accepts once; concurrent requests must take turns.
    async with signin_portal(tmp_path) as (portal, op), httpx.AsyncClient() as c:
        op.access_seconds = 30
        browser = Browser(c, portal.url)
        await browser.sign_in()
        answers = await asyncio.gather(*(browser.request("GET", "/me") for _ in range(6)))
        assert [a.status_code for a in answers] == [200] * 6
        assert op.refreshes >= 1
        assert (await browser.request("GET", "/me")).status_code == 200


async def test_a_refused_refresh_ends_the_session(tmp_path: Path) -> None:
    async with signin_portal(tmp_path) as (portal, op), httpx.AsyncClient() as c:
        op.access_seconds = 30
        browser = Browser(c, portal.url)
        await browser.sign_in()
        op.refuse_refresh = True
        refused = await browser.request("GET", "/me")
        assert refused.status_code == 401 and refused.json()["error"] == "session_expired"
        assert await _sessions(portal.engine) == 0
        state = (await browser.request("GET", "/auth/session")).json()
        assert state["signed_in"] is False and state["csrf_token"] is None


async def test_a_session_past_its_lifetime_is_refused(tmp_path: Path) -> None:
    async with signin_portal(tmp_path) as (portal, _op), httpx.AsyncClient() as c:
        browser = Browser(c, portal.url)
        await browser.sign_in()
        async with portal.engine.begin() as conn:
            await conn.execute(update(web_sessions).values(expires_at=func.now()))
        await asyncio.sleep(0.01)
        refused = await browser.request("GET", "/me")
        assert refused.status_code == 401 and refused.json()["error"] == "session_expired"
        assert await _sessions(portal.engine) == 0


async def test_sign_out_ends_the_session_here_and_at_the_provider(tmp_path: Path) -> None:
    async with signin_portal(tmp_path) as (portal, op), httpx.AsyncClient() as c:
        browser = Browser(c, portal.url)
        await browser.sign_in()
        csrf = await browser.csrf()
        refresh_token = next(iter(op.refresh_tokens))
        out = await browser.post("/auth/logout", csrf=csrf)
        assert out.status_code == 200, out.text
        end = urlsplit(out.json()["end_session_url"])
        assert f"{end.scheme}://{end.netloc}{end.path}" == f"{op.url}/session/end"
        assert parse_qs(end.query) == {
            "client_id": [CLIENT_ID], "post_logout_redirect_uri": [f"{portal.url}/"],
        }
        assert set_cookies(out)[SESSION_COOKIE]["max-age"] == "0"
        assert await _sessions(portal.engine) == 0
        assert op.revoked == [refresh_token]
        assert (await browser.request("GET", "/me")).status_code == 401


async def test_sign_in_returns_to_a_local_path_only(tmp_path: Path) -> None:
    async with signin_portal(tmp_path) as (portal, _op), httpx.AsyncClient() as c:
        browser = Browser(c, portal.url)
        assert (await browser.sign_in("/ui/usage")).headers["location"] == "/ui/usage"
        for hostile in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
            assert (await browser.sign_in(hostile)).headers["location"] == "/"


async def test_without_sign_in_configured_there_is_none(tmp_path: Path) -> None:
    async with signin_portal(tmp_path, oidc_client_id=None) as (portal, _op), \
            httpx.AsyncClient() as c:
        browser = Browser(c, portal.url)
        state = (await browser.request("GET", "/auth/session")).json()
        assert state == {"sign_in_available": False, "signed_in": False, "csrf_token": None,
                         "login_url": None, "logout_url": None}
        assert (await browser.request("GET", "/auth/login")).status_code == 404
        assert (await browser.post("/auth/logout", csrf=None)).status_code == 404
