"""A fake OpenID provider for the sign-in tests: the code flow with PKCE, refresh, revocation
and end-session, on 127.0.0.1, signing with the `idp.IdP` test keys.

It signs the user in at once (no login page: the browser tests use the real `oidc-provider`
for that) and enforces what a real provider does: a code is used once, its PKCE verifier must
match its S256 challenge, its redirect URI must be the one asked with, the client must
authenticate. Knobs let a test make it misbehave (another nonce, issuer or audience in the
ID token; a refused refresh) and it records what it was asked.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import BasicAuth, web

from backend.tests.auth.idp import AUDIENCE, IdP, rsa_key, serve_local

CLIENT_ID = "portal-web"
CLIENT_SECRET = "portal-web-secret-0123456789abcdef"


@dataclass
class Code:
    """An issued authorisation code and what it was issued for."""

    redirect_uri: str
    challenge: str
    method: str
    nonce: str | None
    used: bool = False


@dataclass
class OP:
    """The fake provider's state."""

    idp: IdP
    access_seconds: int = 3600
    id_token_claims: dict[str, Any] = field(default_factory=dict)  # overrides, None deletes
    refuse_refresh: bool = False
    codes: dict[str, Code] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)  # every token and code handed out
    token_requests: list[dict[str, str]] = field(default_factory=list)
    refreshes: int = 0
    revoked: list[str] = field(default_factory=list)
    user: dict[str, Any] = field(default_factory=lambda: {
        "sub": "user-123", "email": "alice@example.com", "name": "Alice Example",
        "groups": ["staff"],
    })

    @property
    def url(self) -> str:
        """The issuer."""
        return self.idp.url

    def _tokens(self, nonce: str | None) -> dict[str, Any]:
        now = int(time.time())
        exp = now + self.access_seconds
        access = self.idp.token(aud=AUDIENCE, exp=exp, **self.user)
        id_claims: dict[str, Any] = {"aud": CLIENT_ID, "exp": exp, "nonce": nonce, **self.user}
        id_claims.update(self.id_token_claims)
        id_token = self.idp.token(**id_claims)
        refresh = secrets.token_urlsafe(24)
        self.refresh_tokens.add(refresh)
        self.issued += [access, id_token, refresh]
        return {"access_token": access, "id_token": id_token, "refresh_token": refresh,
                "token_type": "Bearer", "expires_in": self.access_seconds}


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"="
    ).decode()


def _grant_error(error: str = "invalid_grant") -> web.Response:
    return web.json_response({"error": error}, status=400)


def _app(op: OP) -> web.Application:
    async def discovery(request: web.Request) -> web.Response:
        base = op.url
        return web.json_response({
            "issuer": base, "jwks_uri": f"{base}/jwks", "authorization_endpoint": f"{base}/auth",
            "token_endpoint": f"{base}/token", "end_session_endpoint": f"{base}/session/end",
            "revocation_endpoint": f"{base}/revoke",
        })

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response({"keys": [k.public_jwk() for k in op.idp.keys]})

    async def authorize(request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return web.Response(status=400, text="bad client or response type")
        code = secrets.token_urlsafe(24)
        op.codes[code] = Code(q["redirect_uri"], q.get("code_challenge", ""),
                              q.get("code_challenge_method", ""), q.get("nonce"))
        op.issued.append(code)
        target = f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}"
        raise web.HTTPFound(target)

    async def token(request: web.Request) -> web.Response:
        form = dict(await request.post())
        op.token_requests.append({k: str(v) for k, v in form.items()})
        auth = BasicAuth.decode(request.headers.get("Authorization", "Basic Og=="))
        if (auth.login, auth.password) != (CLIENT_ID, CLIENT_SECRET):
            return _grant_error("invalid_client")
        if form.get("grant_type") == "refresh_token":
            op.refreshes += 1
            presented = str(form.get("refresh_token"))
            if op.refuse_refresh or presented not in op.refresh_tokens:
                return _grant_error()
            op.refresh_tokens.discard(presented)  # rotated: each one is used once
            return web.json_response(op._tokens(None))
        code = op.codes.get(str(form.get("code")))
        if code is None or code.used:
            return _grant_error()
        code.used = True
        verifier = str(form.get("code_verifier", ""))
        if code.method != "S256" or not verifier or _s256(verifier) != code.challenge:
            return _grant_error()
        if form.get("redirect_uri") != code.redirect_uri:
            return _grant_error()
        return web.json_response(op._tokens(code.nonce))

    async def revoke(request: web.Request) -> web.Response:
        token_value = str((await request.post()).get("token"))
        op.revoked.append(token_value)
        op.refresh_tokens.discard(token_value)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    app.router.add_get("/auth", authorize)
    app.router.add_post("/token", token)
    app.router.add_post("/revoke", revoke)
    return app


@asynccontextmanager
async def start() -> AsyncIterator[OP]:
    """Serve the fake provider on a free port of 127.0.0.1."""
    op = OP(IdP(keys=[rsa_key()]))
    async with serve_local(_app(op)) as url:
        op.idp.url = url
        yield op
