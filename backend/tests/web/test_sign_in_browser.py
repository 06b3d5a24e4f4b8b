"""Sign-in end to end in Chromium against a real OpenID provider (oidc-provider, with Node):
sign in through its login and consent pages, see one's name and one's groups' specialists,
chat, see "My usage", sign out on both sides; and a session that has expired."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy import func, select, update

from backend.auth.session_table import web_sessions
from backend.tests.support import bound_socket
from backend.tests.usage.portal import Portal, running_portal
from backend.tests.web.browser import assert_clean, axe_violations, new_page, screenshot
from backend.tests.web.chat_page import answered, send
from backend.tests.web.oidc_provider import oidc_provider

JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.")  # a JWT's header and payload
CLIENT_ID = "ai-portal-web"
CLIENT_SECRET = "browser-test-client-secret-0123456789"
USER = {"name": "Alice Example", "email": "alice@example.com", "email_verified": True,
        "groups": ["staff"]}
DEMO = "44444444-4444-4444-8444-444444444444"
STAFF_ONLY = "88888888-8888-4888-8888-888888888888"
FINANCE_ONLY = "99999999-9999-4999-8999-999999999999"


@dataclass
class SignIn:
    """The running provider and the portal that signs in there."""

    issuer: str
    portal: Portal


def _specialists(path: Path) -> Path:
    def entry(sid: str, name: str, groups: list[str]) -> dict[str, Any]:
        return {"id": sid, "name": name, "provider": "demo", "model": "demo-echo",
                "system_prompt": "You are the sign-in test specialist.",
                "allowed_groups": groups}

    path.write_text(yaml.safe_dump({"specialists": [
        entry(DEMO, "Demo", []), entry(STAFF_ONLY, "Staff desk", ["staff"]),
        entry(FINANCE_ONLY, "Finance desk", ["finance"]),
    ]}))
    return path


@asynccontextmanager
async def _sign_in_portal(tmp_path: Path) -> AsyncIterator[SignIn]:
    async with AsyncExitStack() as stack:
        sock = bound_socket()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        # 30 s access tokens, inside the 60 s refresh margin: every signed-in request
        # refreshes them at the real provider, so the refresh path is exercised throughout.
        issuer = await stack.enter_async_context(oidc_provider(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, portal_url=url, user=USER,
            access_token_seconds=30,
        ))
        portal = await stack.enter_async_context(running_portal(
            tmp_path, f"sqlite:///{tmp_path / 'u.db'}", sock=sock,
            specialists_file=_specialists(tmp_path / "signin-specialists.yaml"),
            auth_mode="jwt", oidc_issuer=issuer, jwt_audience="ai-portal",
            oidc_client_id=CLIENT_ID, oidc_client_secret=CLIENT_SECRET, public_url=url,
            session_secret="browser-test-session-secret-0123456789",
            oidc_scopes=["openid", "profile", "email", "groups"],
            budget_user_usd=5, demo_chunk_delay_seconds=0.01,
        ))
        yield SignIn(issuer, portal)


@pytest.fixture
async def sign_in(tmp_path: Path) -> AsyncIterator[SignIn]:
    """oidc-provider on 127.0.0.1, and a portal registered there as a confidential client."""
    async with _sign_in_portal(tmp_path) as running:
        yield running


async def _local_page(browser: Any) -> Any:
    page = await new_page(browser)

    async def local_only(route: Any) -> None:
        # The provider's pages @import a web font: nothing may leave 127.0.0.1.
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            await route.abort()

    await page.context.route("**/*", local_only)
    return page


async def _sign_in(page: Any, setup: SignIn) -> None:
    await page.goto(setup.portal.url + "/")
    await page.get_by_role("link", name="Sign in").click()
    await page.wait_for_url(f"{setup.issuer}/interaction/**")
    await page.fill("input[name=login]", "alice")
    await page.fill("input[name=password]", "any password")
    await page.get_by_role("button", name="Sign-in").click()
    await page.get_by_role("button", name="Continue").click()  # consent
    await page.wait_for_url(setup.portal.url + "/")
    await page.wait_for_selector("#identity:not([hidden])")


async def _sessions(portal: Portal) -> int:
    async with portal.engine.connect() as conn:
        return int((await conn.execute(
            select(func.count()).select_from(web_sessions)
        )).scalar_one())


async def test_sign_in_chat_and_sign_out(sign_in: SignIn, browser: Any) -> None:
    page = await _local_page(browser)
    await _sign_in(page, sign_in)
    assert await page.inner_text("#identity") == "Signed in as Alice Example"
    assert await page.get_by_role("button", name="Sign out").is_visible()
    assert await page.locator("#sign-in").is_hidden()
    # Her groups' specialists only.
    await page.wait_for_function("() => !document.getElementById('specialist').disabled")
    options = await page.locator("#specialist option").evaluate_all(
        "options => options.map(o => o.value)"
    )
    assert DEMO in options and STAFF_ONLY in options and FINANCE_ONLY not in options
    # The session cookie: HttpOnly, SameSite=Lax, Secure (ENVIRONMENT=test); page script and
    # storage hold no token.
    cookies = {c["name"]: c for c in await page.context.cookies(sign_in.portal.url)}
    session = cookies["__Host-portal_session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Lax"
    assert await page.evaluate("document.cookie") == ""
    # A chat, sent with the session's CSRF token.
    await page.get_by_label("Specialist", exact=True).select_option(DEMO)
    await send(page, "hello from a signed-in browser")
    await answered(page, 1)
    assert "hello from a signed-in browser" in await page.inner_text(".turn.assistant .body")
    stored = await page.evaluate("JSON.stringify(Object.assign({}, localStorage, sessionStorage))")
    assert not JWT.search(stored) and session["value"] not in stored
    # My usage: her own spend this month (GET /me/usage, updated after the answer; the demo
    # is free) and her budget.
    await page.wait_for_selector("#my-usage:not([hidden])")
    await page.wait_for_function(
        "() => document.getElementById('my-usage').textContent.includes('$0 on 1 request')"
    )
    panel = await page.inner_text("#my-usage")
    assert "Spent this month" in panel and "Your budget" in panel and "of $5 spent" in panel
    assert await axe_violations(page) == []
    await screenshot(page, "chat-signed-in")
    # Sign out: the session ends here, then at the provider, which sends her back.
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(f"{sign_in.issuer}/session/end**")
    assert await _sessions(sign_in.portal) == 0
    await page.get_by_role("button", name="Yes, sign me out").click()
    await page.wait_for_url(sign_in.portal.url + "/")
    await page.get_by_role("link", name="Sign in").wait_for()
    assert await page.locator("#identity").is_hidden()
    assert_clean(page)


async def test_an_expired_session_asks_to_sign_in_again(sign_in: SignIn, browser: Any) -> None:
    page = await _local_page(browser)
    await _sign_in(page, sign_in)
    async with sign_in.portal.engine.begin() as conn:  # past SESSION_LIFETIME_SECONDS
        await conn.execute(update(web_sessions).values(expires_at=func.now()))
    await page.reload()
    await page.get_by_role("link", name="Sign in").wait_for()
    assert await page.locator("#identity").is_hidden()
    assert await page.locator("#sign-out").is_hidden()
    assert await _sessions(sign_in.portal) == 0
    # Signing in again works, straight through the provider's still-open session.
    await page.get_by_role("link", name="Sign in").click()
    await page.wait_for_selector("#identity:not([hidden])")
    assert await page.inner_text("#identity") == "Signed in as Alice Example"
