"""A local OIDC identity provider for the tests: discovery, a rotating key set, tokens.

An aiohttp app on 127.0.0.1 serving `/.well-known/openid-configuration` and `/jwks`, with
keys made by `cryptography` and tokens minted by PyJWT (RS256, ES256, and any header or
claim an attack needs). It counts JWKS fetches, and can be taken down.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "ai-portal"


@dataclass
class SigningKey:
    """A private key, its kid and algorithm."""

    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK."""
        algorithm = RSAAlgorithm if self.alg.startswith(("RS", "PS")) else ECAlgorithm
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        jwk.update(kid=self.kid, use="sig", alg=self.alg)
        return jwk


def rsa_key(kid: str | None = None) -> SigningKey:
    """A fresh RS256 key."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid or f"rsa-{uuid.uuid4().hex[:8]}", "RS256", private)


def ec_key(kid: str | None = None) -> SigningKey:
    """A fresh ES256 (P-256) key."""
    return SigningKey(kid or f"ec-{uuid.uuid4().hex[:8]}", "ES256",
                      ec.generate_private_key(ec.SECP256R1()))


@dataclass
class IdP:
    """The running provider's state: its keys, what it answers, what it was asked."""

    url: str = ""
    keys: list[SigningKey] = field(default_factory=list)
    max_age: int | None = 600
    down: bool = False
    jwks_fetches: int = 0
    discovery_fetches: int = 0

    @property
    def issuer(self) -> str:
        """The issuer: the server's base URL."""
        return self.url

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """A valid claim set (one hour), with `overrides` (None deletes a claim)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": AUDIENCE, "sub": "user-123", "email": "Alice@Example.com",
            "groups": ["staff"], "iat": now, "nbf": now, "exp": now + 3600,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self, key: SigningKey | None = None, *, headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token signed by `key` (the first key by default)."""
        key = key or self.keys[0]
        return jwt.encode(
            self.claims(**claims), key.private, algorithm=key.alg,
            headers={"kid": key.kid, **(headers or {})},
        )


def _app(idp: IdP) -> web.Application:
    async def discovery(request: web.Request) -> web.Response:
        idp.discovery_fetches += 1
        if idp.down:
            return web.Response(status=503)
        return web.json_response({"issuer": idp.issuer, "jwks_uri": f"{idp.url}/jwks"})

    async def jwks(request: web.Request) -> web.Response:
        idp.jwks_fetches += 1
        if idp.down:
            return web.Response(status=503)
        headers = {"Cache-Control": f"max-age={idp.max_age}"} if idp.max_age is not None else {}
        return web.json_response({"keys": [k.public_jwk() for k in idp.keys]}, headers=headers)

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    return app


@asynccontextmanager
async def serve_local(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app on a free port of 127.0.0.1; yield its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def start(*keys: SigningKey) -> AsyncIterator[IdP]:
    """Serve an IdP with `keys` (one RSA key by default) on a free port of 127.0.0.1."""
    idp = IdP(keys=list(keys) or [rsa_key()])
    async with serve_local(_app(idp)) as url:
        idp.url = url
        yield idp
