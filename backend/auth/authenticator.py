"""AUTH_MODE: turning one request (or WebSocket) into an `Identity`, or an AuthError.

The one place that reads credentials: the user and groups headers, `X-Frontend-Secret`,
`Authorization: Bearer` (a JWT or a personal API key). Everything else takes the Identity.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Sequence
from typing import Literal

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from backend.auth.apikeys import ApiKeys, looks_like_key
from backend.auth.errors import TokenInvalid, TokenMissing, UntrustedFrontend
from backend.auth.identity import Identity, user_hash
from backend.auth.jwks import HttpKeySource, JWKSCache, KeySource, StaticKeySource
from backend.auth.oidc import OidcClient
from backend.auth.sealing import Sealer, session_key
from backend.auth.session_store import SessionStore
from backend.auth.sessions import BrowserSessions, CookiePolicy
from backend.auth.tokens import ClaimMap, JWTVerifier
from backend.config.settings import Settings

log = logging.getLogger(__name__)

# Larger than any IdP's token; a bigger header is refused unread.
MAX_CREDENTIAL_BYTES = 8 * 1024
FRONTEND_SECRET_HEADER = "x-frontend-secret"
Mode = Literal["none", "header", "jwt"]


def bearer_token(connection: HTTPConnection) -> str | None:
    """The Bearer credential of the Authorization header (None when there is none)."""
    header = connection.headers.get("authorization")
    if header is None:
        return None
    if len(header) > MAX_CREDENTIAL_BYTES:
        raise TokenInvalid("the Authorization header is over 8 KB")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise TokenInvalid("the Authorization header must be `Bearer <token>`")
    return token


class Authenticator:
    """Resolves identities for the configured AUTH_MODE."""

    def __init__(
        self, settings: Settings, *, verifier: JWTVerifier | None, api_keys: ApiKeys,
        sessions: BrowserSessions | None = None,
    ) -> None:
        self.mode: Mode = settings.effective_auth_mode()
        self.verifier = verifier
        self.api_keys = api_keys
        # Browser sign-in (AUTH_MODE=jwt with OIDC_CLIENT_ID): the session cookie.
        self.sessions = sessions
        self._secret = settings.hash_secret()
        self._user_header = settings.user_email_header
        self._groups_header = settings.user_groups_header
        self._frontends = tuple(ipaddress.ip_network(c, strict=False)
                                for c in settings.trusted_frontends)
        shared = settings.frontend_shared_secret
        self._frontend_secret = shared.get_secret_value().encode() if shared else None

    @property
    def required(self) -> bool:
        """Whether every caller must prove who they are (header and jwt modes)."""
        return self.mode != "none"

    async def identify(self, connection: HTTPConnection, *, token: str | None = None) -> Identity:
        """The caller's identity; `token` is one sent otherwise (a WebSocket's auth message)."""
        if token is None:
            token = bearer_token(connection)
        elif len(token) > MAX_CREDENTIAL_BYTES:
            raise TokenInvalid("the token is over 8 KB")
        if token is not None and looks_like_key(token):
            return await self.api_keys.identify(token)
        if self.mode == "jwt":
            if token is None and self.sessions is not None:
                # No bearer token: a signed-in browser's cookie (bearer tokens win, so a
                # script's request never needs the cookie's CSRF token).
                session_id = self.sessions.session_id(connection)
                if session_id is not None:
                    return await self.sessions.identify(connection, session_id)
            if token is None:
                raise TokenMissing("this endpoint needs Authorization: Bearer <token>")
            assert self.verifier is not None
            return await self.verifier.verify(token)
        if self.mode == "header":
            return self._from_frontend(connection)
        # none: the user header is believed, as before; a bearer token that is not one of
        # our keys is ignored (OpenAI clients must send some key).
        return self._believed(connection.headers.get(self._user_header), (), "none")

    def _from_frontend(self, connection: HTTPConnection) -> Identity:
        if not self._trusted(connection):
            raise UntrustedFrontend(
                "identity headers are only accepted from a trusted front end"
            )
        email = connection.headers.get(self._user_header)
        if not email or not email.strip():
            raise TokenMissing(f"the front end sent no {self._user_header}")
        raw_groups = connection.headers.get(self._groups_header, "")
        if len(raw_groups) > MAX_CREDENTIAL_BYTES:
            raise TokenInvalid(f"{self._groups_header} is over 8 KB")
        groups = [g.strip() for g in raw_groups.split(",") if g.strip()]
        return self._believed(email, groups, "header")

    def _trusted(self, connection: HTTPConnection) -> bool:
        # The socket peer, not X-Forwarded-For: a front end is a direct caller.
        peer = connection.client.host if connection.client else None
        if peer is not None and self._frontends:
            try:
                address = ipaddress.ip_address(peer)
            except ValueError:
                address = None
            if address is not None and any(address in net for net in self._frontends):
                return True
        sent = connection.headers.get(FRONTEND_SECRET_HEADER)
        if self._frontend_secret is None or sent is None:
            return False
        # Constant time, so the secret cannot be found byte by byte from response times.
        return hmac.compare_digest(sent.encode(), self._frontend_secret)

    def _believed(
        self, email: str | None, groups: Sequence[str], method: Literal["none", "header"]
    ) -> Identity:
        email = email.strip() if email and email.strip() else None
        return Identity(
            method=method, user_id=email, email=email, groups=frozenset(groups),
            user_hash=user_hash(self._secret, email=email, user_id=None),
        )

    def ready(self) -> tuple[bool, str]:
        """Whether identities can be verified now (for /ready), and why not."""
        keys = self.verifier.keys if self.verifier else None
        if keys is None or keys.ready():
            return True, "ok"
        return False, f"signing keys unavailable: {keys.last_error or 'not loaded yet'}"


def build_authenticator(
    settings: Settings, session: aiohttp.ClientSession, api_keys: ApiKeys, engine: AsyncEngine
) -> Authenticator:
    """The authenticator for the settings' AUTH_MODE (keys are fetched on first use)."""
    verifier, sessions = None, None
    if settings.effective_auth_mode() == "jwt":
        verifier = _verifier(settings, session)
        if settings.sign_in_enabled():
            sessions = _browser_sessions(settings, session, engine, verifier)
    return Authenticator(settings, verifier=verifier, api_keys=api_keys, sessions=sessions)


def _browser_sessions(
    settings: Settings, session: aiohttp.ClientSession, engine: AsyncEngine,
    verifier: JWTVerifier,
) -> BrowserSessions:
    assert settings.oidc_client_id is not None and settings.oidc_issuer is not None
    secret = settings.oidc_client_secret
    client = OidcClient(
        session, issuer=settings.oidc_issuer, client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        scopes=settings.oidc_scopes, timeout=settings.jwks_timeout_seconds,
    )
    key = settings.session_secret
    return BrowserSessions(
        store=SessionStore(engine), client=client,
        # ID tokens are for the client id; same keys, same checks as bearer tokens.
        id_tokens=verifier.for_audience(settings.oidc_client_id),
        sealer=Sealer(session_key(
            key.get_secret_value().encode() if key else None, settings.hash_secret()
        )),
        cookies=CookiePolicy(
            secure=settings.environment != "development",
            lifetime=settings.session_lifetime_seconds,
        ),
        public_url=settings.public_url,
    )


def _verifier(settings: Settings, session: aiohttp.ClientSession) -> JWTVerifier:
    keys: JWKSCache | None = None
    hs = settings.jwt_hs256_secret
    if hs is None:
        source: KeySource
        if settings.jwt_static_jwks is not None:
            source = StaticKeySource(settings.jwt_static_jwks)
        else:
            source = HttpKeySource(
                session, timeout=settings.jwks_timeout_seconds,
                issuer=settings.oidc_issuer, jwks_url=settings.jwt_jwks_url,
            )
        keys = JWKSCache(
            source, max_age=settings.jwks_cache_seconds, stale_seconds=settings.jwks_stale_seconds
        )
    issuer = settings.oidc_issuer or settings.jwt_issuer
    assert issuer is not None and settings.jwt_audience is not None  # checked at start-up
    return JWTVerifier(
        keys=keys, hs256_secret=hs.get_secret_value().encode() if hs else None,
        algorithms=settings.jwt_algorithms, issuer=issuer, audience=settings.jwt_audience,
        leeway=settings.jwt_leeway_seconds,
        claims=ClaimMap(
            user=settings.jwt_user_claim, email=settings.jwt_email_claim,
            groups=settings.jwt_groups_claim, cost_center=settings.jwt_cost_center_claim,
        ),
        hash_secret=settings.hash_secret(),
    )
