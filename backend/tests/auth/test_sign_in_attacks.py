"""Browser sign-in under attack: each of these fails closed (no session, or 401/403), and no
token, code or session id ever shows in a response body, a log line or the database."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, update

from backend.auth.session_table import web_logins, web_sessions
from backend.tests.auth.idp import AUDIENCE
from backend.tests.auth.signin import SESSION_COOKIE, Browser, set_cookies, signin_portal
from backend.tests.usage.portal import chat_body


def _no_session(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "sign_in_failed"
    assert SESSION_COOKIE not in set_cookies(response)


async def test_a_callback_with_a_wrong_or_missing_state_is_refused(tmp_path: Path) -> None:
    async with signin_portal(tmp_path) as (portal, _op), httpx.AsyncClient() as c:
        browser = Browser(c, portal.url)
        state, callback = await browser.until_callback()
        _no_session(await browser.callback(callback, "another-browsers-state"))
        _no_session(await browser.callback(callback, None))  # no login cookie at all
        stateless = callback.replace(f"state={state}", "state=")
        _no_session(await browser.callback(stateless, state))


async def test_a_replayed_code_is_refused(tmp_path: Path) -> None:
    async with signin_portal(tmp_path) as (portal, _op), httpx.AsyncClient() as c:
        browser = Browser(c, portal.url)
        state, callback = await browser.until_callback()
        assert (await browser.callback(callback, state)).status_code == 303
        # The same callback again: its state was used up by the first.
        _no_session(await browser.callback(callback, state))
        # The same code under a fresh, valid state: the provider refuses a second use.
        fresh_state, _ = await browser.start_login()
        code_only = callback.replace(f"state={state}", f"state={fresh_state}")
        _no_session(await browser.callback(code_only, fresh_state))


async def test_without_the_logins_pkce_verifier_there_is_no_session(tmp_path: Path) -> None:
    async with signin_portal(tmp_path) as (portal, op), httpx.AsyncClient() as c:
        browser = Browser(c, portal.url)
        state, callback = await browser.until_callback()
        async with portal.engine.begin() as conn:  # the verifier is gone (or never was)
            await conn.execute(delete(web_logins))
        _no_session(await browser.callback(callback, state))
        assert not [r for r in op.token_requests if r["grant_type"] == "authorization_code"]


async def test_the_provider_refuses_a_code_without_the_right_verifier(tmp_path: Path) -> None:
    # The fake provider enforces PKCE like a real one: the portal's verifier is what passes.
    async with signin_portal(tmp_path) as (portal, op), httpx.AsyncClient() as c:
        browser = Browser(c, portal.url)
        state, callback = await browser.until_callback()
        code = next(iter(op.codes.values()))
        code.challenge = "not-the-challenge-of-the-portals-verifier"
        _no_session(await browser.callback(callback, state))


@pytest.mark.parametrize("claims", [
    {"nonce": "another-sign-ins-nonce"},
    {"nonce": None},
    {"iss": "http://127.0.0.1:9/another-issuer"},
    {"aud": "another-client"},
    {"aud": AUDIENCE},  # an access token's audience, not this client's
    {"exp": 1},
])
async def test_an_id_token_that_is_not_for_this_sign_in_is_refused(
    tmp_path: Path, claims: dict[str, Any]
) -> None:
    async with signin_portal(tmp_path) as (portal, op), httpx.AsyncClient() as c:
        op.id_token_claims = claims
        _no_session(await _callback_response(Browser(c, portal.url)))


async def _callback_response(browser: Browser) -> httpx.Response:
    state, callback = await browser.until_callback()
    return await browser.callback(callback, state)


async def test_an_unknown_or_tampered_session_cookie_is_refused(tmp_path: Path) -> None:
    async with signin_portal(tmp_path) as (portal, _op), httpx.AsyncClient() as c:
        browser = Browser(c, portal.url)
        await browser.sign_in()
        good = browser.session
        assert good is not None
        tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
        for value in (tampered, "made-up-session-id", "x" * 4000):
            response = await browser.request("GET", "/me", cookie=f"{SESSION_COOKIE}={value}")
            assert response.status_code == 401, response.text
        # A row whose sealed tokens were changed in the database does not open.
        async with portal.engine.begin() as conn:
            sealed = (await conn.execute(select(web_sessions.c.sealed))).scalar_one()
            flipped = bytes([sealed[0] ^ 1]) + bytes(sealed[1:])
            await conn.execute(update(web_sessions).values(sealed=flipped))
        assert (await browser.request("GET", "/me")).status_code == 401


async def test_cookie_requests_need_the_own_origin_and_the_csrf_token(tmp_path: Path) -> None:
    async with signin_portal(tmp_path) as (portal, op), httpx.AsyncClient() as c:
        browser = Browser(c, portal.url)
        await browser.sign_in()
        csrf = await browser.csrf()
        body = chat_body("demo")
        forged = [
            await browser.post("/chat/send", csrf=None, json=body),
            await browser.post("/chat/send", csrf="0" * 64, json=body),
            await browser.post("/chat/send", csrf=csrf, origin="https://evil.example", json=body),
            await browser.post("/chat/send", csrf=csrf, origin=None, json=body),
            await browser.post("/chat/stream", csrf=None, json=body),
            await browser.post("/auth/logout", csrf=None),
        ]
        for response in forged:
            assert response.status_code == 403, response.text
            assert response.json()["error"] == "csrf_refused"
        assert (await browser.request("GET", "/me")).status_code == 200  # still signed in
        same_site = await browser.post(
            "/chat/send", csrf=csrf, origin=None, headers={"Referer": f"{portal.url}/"},
            json=body,
        )
        assert same_site.status_code == 200, same_site.text
        # A bearer token needs neither (no browser attaches it by itself).
        bearer = await browser.request(
            "POST", "/chat/send", cookie="", json=body,
            headers={"Authorization": f"Bearer {op.idp.token()}"},
        )
        assert bearer.status_code == 200, bearer.text


async def test_no_token_in_any_response_log_line_or_database_column(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    # JSON logs: with an access line per request, the callback's too.
    async with signin_portal(tmp_path, log_format="json") as (portal, op), \
            httpx.AsyncClient() as c:
        op.access_seconds = 30  # so a refresh happens too
        browser = Browser(c, portal.url)
        responses = [await browser.sign_in(), await browser.request("GET", "/me"),
                     await browser.request("GET", "/auth/session"),
                     await browser.request("GET", "/")]
        csrf = await browser.csrf()
        responses.append(await browser.post("/chat/send", csrf=csrf, json=chat_body("demo")))
        responses.append(await browser.post("/auth/logout", csrf=csrf))
        seen += [r.text + str(r.headers) for r in responses]
        secrets_ = [t for t in op.issued if len(t) > 16]
        assert len(secrets_) >= 7  # a code, and two sets of three tokens at least
        dump = await _database_text(portal.engine)
    # The portal's log lines (and the fake provider's), not this test's own HTTP client's.
    logged = "\n".join(
        r.getMessage() + str(r.args) for r in caplog.records
        if not r.name.startswith(("httpx", "httpcore", "aiohttp.access"))
    )
    assert "/auth/callback" in logged  # the portal's access lines are among them
    session_id = browser.session
    assert session_id is not None
    for secret in secrets_:
        for part in (secret, *secret.split(".")):  # a JWT's signature alone is secret too
            if len(part) < 16:
                continue
            assert all(part not in text for text in seen)
            assert part not in logged
            assert part not in dump
    # The session id is only in the cookie that set it, never logged nor stored.
    assert session_id not in logged and session_id not in dump


async def _database_text(engine: Any) -> str:
    """Every value of every sign-in and usage table, as text (bytes decoded loosely)."""
    from backend.usage.table import metadata

    parts: list[str] = []
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in (await conn.execute(select(table))).all():
                for value in row:
                    parts.append(value.decode("latin-1") if isinstance(value, bytes)
                                 else str(value))
    return "\n".join(parts)
