"""Helpers for the sign-in tests: a portal trusting the fake provider, and a cookie-handling
walk through the code flow with httpx (cookies sent by hand, so every flag can be read)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx

from backend.tests.auth import oidc_op
from backend.tests.auth.idp import AUDIENCE
from backend.tests.auth.oidc_op import CLIENT_ID, CLIENT_SECRET, OP
from backend.tests.support import bound_socket
from backend.tests.usage.portal import Portal, running_portal

SESSION_COOKIE = "__Host-portal_session"
LOGIN_COOKIE = "__Host-portal_login"
SESSION_SECRET = "a-session-secret-of-at-least-32-characters"


def sign_in_settings(op: OP, public_url: str, **overrides: Any) -> dict[str, Any]:
    """AUTH_MODE=jwt by discovery at `op`, with browser sign-in as a confidential client."""
    values: dict[str, Any] = {
        "auth_mode": "jwt", "oidc_issuer": op.url, "jwt_audience": AUDIENCE,
        "oidc_client_id": CLIENT_ID, "oidc_client_secret": CLIENT_SECRET,
        "public_url": public_url, "session_secret": SESSION_SECRET,
        "admin_groups": ["portal-admins"],
    }
    values.update(overrides)
    return values


@asynccontextmanager
async def signin_portal(
    tmp_path: Path, database_url: str | None = None, **overrides: Any
) -> AsyncIterator[tuple[Portal, OP]]:
    """The fake provider, and a portal (its URL known before it starts) signing in there."""
    async with AsyncExitStack() as stack:
        op = await stack.enter_async_context(oidc_op.start())
        sock = bound_socket()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        portal = await stack.enter_async_context(running_portal(
            tmp_path, database_url or f"sqlite:///{tmp_path / 'u.db'}", sock=sock,
            **sign_in_settings(op, url, **overrides),
        ))
        yield portal, op


def set_cookies(response: httpx.Response) -> dict[str, Any]:
    """The response's Set-Cookie headers by name (each a Morsel: value and flags)."""
    found: dict[str, Any] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        found.update(jar)
    return found


@dataclass
class Browser:
    """A client that sends only the cookies a test gives it (httpx's jar would drop Secure
    cookies over http://, and hide which cookie went where)."""

    client: httpx.AsyncClient
    portal_url: str
    session: str | None = None

    async def request(
        self, method: str, path: str, *, cookie: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request with (only) the session cookie, or `cookie` when given."""
        self.client.cookies.clear()
        headers = dict(kwargs.pop("headers", {}))
        sent = cookie if cookie is not None else (
            f"{SESSION_COOKIE}={self.session}" if self.session else None
        )
        if sent:
            headers["Cookie"] = sent
        url = path if path.startswith("http") else self.portal_url + path
        return await self.client.request(
            method, url, headers=headers, follow_redirects=False, **kwargs
        )

    async def start_login(self, next_path: str | None = None) -> tuple[str, str]:
        """GET /auth/login: (the login cookie's state, the provider's authorisation URL)."""
        params = {"next": next_path} if next_path else None
        response = await self.request("GET", "/auth/login", params=params)
        assert response.status_code == 303, response.text
        return set_cookies(response)[LOGIN_COOKIE].value, response.headers["location"]

    async def authorize(self, authorization_url: str) -> str:
        """The provider signs the user in: the callback URL it sends the browser to."""
        response = await self.request("GET", authorization_url, cookie="")
        assert response.status_code == 302, response.text
        return response.headers["location"]

    async def until_callback(self) -> tuple[str, str]:
        """Start a sign-in and let the provider sign in: (login state, callback URL)."""
        state, authorization = await self.start_login()
        return state, await self.authorize(authorization)

    async def callback(self, callback_url: str, login_state: str | None) -> httpx.Response:
        """Follow the provider's redirect back, with the login cookie."""
        cookie = f"{LOGIN_COOKIE}={login_state}" if login_state else ""
        return await self.request("GET", callback_url, cookie=cookie)

    async def sign_in(self, next_path: str | None = None) -> httpx.Response:
        """The whole flow; keeps the session id for the next requests."""
        state, authorization = await self.start_login(next_path)
        response = await self.callback(await self.authorize(authorization), state)
        assert response.status_code == 303, response.text
        self.session = set_cookies(response)[SESSION_COOKIE].value
        return response

    async def csrf(self) -> str:
        """The session's CSRF token, as the page gets it."""
        body = (await self.request("GET", "/auth/session")).json()
        assert body["signed_in"] is True, body
        token: str = body["csrf_token"]
        return token

    async def post(self, path: str, *, csrf: str | None, origin: str | None = "own",
                   **kwargs: Any) -> httpx.Response:
        """An unsafe request as the page makes it (Origin, X-CSRF-Token), or a forged one."""
        headers = dict(kwargs.pop("headers", {}))
        if origin is not None:
            headers["Origin"] = self.portal_url if origin == "own" else origin
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        return await self.request("POST", path, headers=headers, **kwargs)
