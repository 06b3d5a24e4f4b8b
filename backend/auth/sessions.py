"""Browser sessions: sign-in through the provider, a cookie that holds only a random id, the
tokens kept (sealed) on the server, refreshed before they expire, ended at sign-out.

A cookie-authenticated request resolves to the same `Identity` a bearer token gives, with
`method="session"`. Because a browser attaches the cookie by itself, every unsafe request
(and every WebSocket) authenticated by it must come from the portal's own origin, and
unsafe requests must also carry the session's CSRF token in X-CSRF-Token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import HTTPConnection

from backend.auth.errors import (
    AuthUnavailable,
    CsrfRefused,
    SessionExpired,
    SignInFailed,
    TokenInvalid,
)
from backend.auth.identity import Identity
from backend.auth.oidc import OidcClient, TokenSet
from backend.auth.sealing import Sealer, Unsealable
from backend.auth.session_store import SessionStore
from backend.auth.tokens import JWTVerifier

CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_SECONDS = 600.0  # a sign-in not finished within ten minutes starts again
# Tokens are refreshed this long before they expire, so no request meets an expired one.
REFRESH_MARGIN_SECONDS = 60.0
# A worker that finds another refreshing waits this long, at most, for the new tokens.
REFRESH_WAIT_SECONDS = 5.0
_MAX_ID_CHARS = 128


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased (the form browsers send in Origin)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def safe_return_path(path: str | None) -> str:
    """A path on this portal to go back to after sign-in; anything else (another site,
    `//host`, a scheme) is `/`, so /auth/login cannot be used as an open redirect."""
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")):
        return "/"
    if any(c in path for c in "\\\r\n\t") or len(path) > 2000:
        return "/"
    return path


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    """The session and login cookies' names and flags."""

    secure: bool  # outside development
    lifetime: float

    @property
    def session_name(self) -> str:
        """`__Host-` makes the browser refuse it unless Secure, on /, with no Domain."""
        return "__Host-portal_session" if self.secure else "portal_session"

    @property
    def login_name(self) -> str:
        """The login-in-flight cookie: the `state`, to bind the callback to this browser."""
        return "__Host-portal_login" if self.secure else "portal_login"


class BrowserSessions:
    """Signs browsers in and out, and identifies requests by their session cookie."""

    def __init__(
        self, *, store: SessionStore, client: OidcClient, id_tokens: JWTVerifier,
        sealer: Sealer, cookies: CookiePolicy, public_url: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._client = client
        self._id_tokens = id_tokens
        self._sealer = sealer
        self.cookies = cookies
        self._public_url = public_url.rstrip("/") if public_url else None
        self._clock = clock
        self._refreshing: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # ---- where the portal is ----

    def base_url(self, connection: HTTPConnection) -> str:
        """PUBLIC_URL, or (development only) the URL this request came to."""
        if self._public_url is not None:
            return self._public_url
        return str(connection.base_url).rstrip("/")

    def own_origin(self, connection: HTTPConnection) -> str:
        """The origin the portal's own page has."""
        return origin_of(self.base_url(connection))

    # ---- signing in ----

    async def begin(self, connection: HTTPConnection, return_to: str | None) -> tuple[str, str]:
        """Start a sign-in: (the provider's authorisation URL, the state for the cookie)."""
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters: RFC 7636 allows 43-128
        state_hash = _hash(state)
        login = {"nonce": nonce, "verifier": verifier, "return_to": safe_return_path(return_to)}
        url = await self._client.authorization_url(
            redirect_uri=self.redirect_uri(connection), state=state, nonce=nonce,
            verifier=verifier,
        )
        await self._store.add_login(
            state_hash, self._sealer.seal(orjson.dumps(login), bound_to=state_hash.encode()),
            expires_at=self._clock() + LOGIN_SECONDS,
        )
        return url, state

    def redirect_uri(self, connection: HTTPConnection) -> str:
        """Where the provider sends the browser back (registered at the provider)."""
        return self.base_url(connection) + "/auth/callback"

    async def finish(
        self, connection: HTTPConnection, *, code: str | None, state: str | None,
        state_cookie: str | None, error: str | None,
    ) -> tuple[str, str]:
        """Complete a sign-in: (the new session's id for the cookie, the path to go back to)."""
        if not state or not state_cookie or not hmac.compare_digest(
            state.encode(), state_cookie.encode()
        ):
            raise SignInFailed("the sign-in's state does not match this browser's")
        sealed = await self._store.take_login(_hash(state))
        if sealed is None:
            raise SignInFailed("this sign-in is unknown, expired or already used")
        try:
            login = orjson.loads(self._sealer.open(sealed, bound_to=_hash(state).encode()))
        except Unsealable:
            raise SignInFailed("this sign-in cannot be read (SESSION_SECRET changed?)") from None
        if error is not None or not code:
            raise SignInFailed("the identity provider did not sign the user in")
        tokens = await self._client.exchange(
            code=code, verifier=login["verifier"], redirect_uri=self.redirect_uri(connection)
        )
        claims = await self._verified_id_token(tokens)
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(
            nonce.encode(), login["nonce"].encode()
        ):
            raise SignInFailed("the ID token's nonce is not this sign-in's")
        self._id_tokens.identity(claims, "session")  # refuses claims with no user id
        session_id = secrets.token_urlsafe(32)
        id_hash = _hash(session_id)
        now = self._clock()
        await self._store.add_session(
            id_hash, self._seal(id_hash, tokens, claims),
            expires_at=now + self.cookies.lifetime, tokens_expire_at=tokens.expires_at,
        )
        return session_id, login["return_to"]

    async def _verified_id_token(self, tokens: TokenSet) -> dict[str, Any]:
        if tokens.id_token is None:
            raise SignInFailed("the identity provider's answer has no ID token")
        try:
            return await self._id_tokens.verified_claims(tokens.id_token)
        except TokenInvalid as exc:
            raise SignInFailed(f"the ID token does not verify: {exc.message}") from exc

    # ---- requests ----

    def session_id(self, connection: HTTPConnection) -> str | None:
        """The session cookie's value, if it has a plausible one."""
        value = connection.cookies.get(self.cookies.session_name)
        if not value or len(value) > _MAX_ID_CHARS:
            return None
        return value

    def csrf_token(self, session_id: str) -> str:
        """The session's CSRF token: a MAC of its id, so it needs no storage."""
        return self._sealer.mac(b"csrf:" + session_id.encode())

    async def identify(self, connection: HTTPConnection, session_id: str) -> Identity:
        """The identity behind a session cookie, refreshing its tokens when due."""
        self.check_request_origin(connection, session_id)
        id_hash = _hash(session_id)
        row = await self._store.session(id_hash)
        now = self._clock()
        if row is None:
            raise SessionExpired("the session has ended; sign in again")
        if row.expires_at <= now:
            await self._store.delete(id_hash)
            raise SessionExpired("the session has reached its lifetime; sign in again")
        data = self._open(id_hash, row.sealed)
        expires_at = row.tokens_expire_at
        if expires_at - REFRESH_MARGIN_SECONDS <= now:
            data, expires_at = await self._refresh(id_hash, data, expires_at)
        identity = self._id_tokens.identity(data["claims"], "session")
        return replace(identity, expires_at=min(expires_at, row.expires_at))

    def check_request_origin(self, connection: HTTPConnection, session_id: str) -> None:
        """CSRF: unsafe requests and WebSockets from the portal's own origin only, and unsafe
        requests with the session's token too. Bearer requests never come here."""
        websocket = connection.scope["type"] == "websocket"
        method = connection.scope.get("method", "GET")
        if not websocket and method in SAFE_METHODS:
            return
        sent = connection.headers.get("origin")
        if sent is None or sent == "null":
            referer = connection.headers.get("referer")
            sent = origin_of(referer) if referer else None
        if sent is None or sent.rstrip("/").lower() != self.own_origin(connection):
            raise CsrfRefused("a signed-in request must come from the portal's own page")
        if websocket:
            return  # a socket's messages are not forms: the origin is the whole defence
        token = connection.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(token.encode(), self.csrf_token(session_id).encode()):
            raise CsrfRefused("the request lacks this session's X-CSRF-Token")

    async def _refresh(
        self, id_hash: str, data: dict[str, Any], expires_at: float
    ) -> tuple[dict[str, Any], float]:
        lock = self._refreshing.get(id_hash)
        if lock is None:
            lock = self._refreshing[id_hash] = asyncio.Lock()
        async with lock:  # one refresh per session in this worker ...
            row = await self._store.session(id_hash)
            if row is None:
                raise SessionExpired("the session has ended; sign in again")
            # The row as it is now: another request may have refreshed (and rotated the
            # refresh token) while this one waited.
            data, expires_at = self._open(id_hash, row.sealed), row.tokens_expire_at
            if expires_at - REFRESH_MARGIN_SECONDS > self._clock():
                return data, expires_at
            if await self._store.claim_refresh(id_hash):  # ... and across workers
                return await self._refresh_claimed(id_hash, data)
        return await self._await_other_refresh(id_hash, data, expires_at)

    async def _refresh_claimed(
        self, id_hash: str, data: dict[str, Any]
    ) -> tuple[dict[str, Any], float]:
        refresh_token = data["tokens"].get("refresh_token")
        try:
            if not refresh_token:
                raise SessionExpired("the session's tokens expired and cannot be refreshed")
            tokens = await self._client.refresh(refresh_token)
            claims = data["claims"]
            if tokens.id_token is not None:
                claims = await self._refreshed_claims(tokens, claims)
        except SessionExpired:
            await self._store.delete(id_hash)
            raise
        except BaseException:
            await self._store.release(id_hash)
            raise
        await self._store.refreshed(
            id_hash, self._seal(id_hash, tokens, claims), tokens_expire_at=tokens.expires_at
        )
        return self._payload(tokens, claims), tokens.expires_at

    async def _refreshed_claims(
        self, tokens: TokenSet, old: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            claims = await self._verified_id_token(tokens)
        except SignInFailed as exc:
            raise SessionExpired("the refreshed ID token does not verify") from exc
        if claims.get("sub") != old.get("sub"):  # OIDC Core 12.2: the same subject
            raise SessionExpired("the refreshed ID token is for another user")
        return claims

    async def _await_other_refresh(
        self, id_hash: str, data: dict[str, Any], expires_at: float
    ) -> tuple[dict[str, Any], float]:
        deadline = self._clock() + REFRESH_WAIT_SECONDS
        while True:
            if expires_at > self._clock():
                return data, expires_at  # still good: the other worker's refresh is early
            await asyncio.sleep(0.05)
            row = await self._store.session(id_hash)
            if row is None:
                raise SessionExpired("the session has ended; sign in again")
            if row.tokens_expire_at > expires_at:
                return self._open(id_hash, row.sealed), row.tokens_expire_at
            if self._clock() > deadline:
                raise AuthUnavailable("the session's tokens are being refreshed; try again")

    # ---- signing out ----

    async def end(self, connection: HTTPConnection, session_id: str) -> str | None:
        """Sign out: revoke at the provider, delete the session, and give the provider's
        end-session URL (None when it has none) for the browser to visit."""
        id_hash = _hash(session_id)
        row = await self._store.session(id_hash)
        await self._store.delete(id_hash)
        if row is not None:
            try:
                refresh_token = self._open(id_hash, row.sealed)["tokens"].get("refresh_token")
            except SessionExpired:
                refresh_token = None
            if refresh_token:
                await self._client.revoke(refresh_token, "refresh_token")
        return await self._client.end_session_url(self.base_url(connection) + "/")

    # ---- sealing ----

    def _payload(self, tokens: TokenSet, claims: dict[str, Any]) -> dict[str, Any]:
        return {
            "tokens": {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
                       "id_token": tokens.id_token},
            "claims": claims,
        }

    def _seal(self, id_hash: str, tokens: TokenSet, claims: dict[str, Any]) -> bytes:
        return self._sealer.seal(
            orjson.dumps(self._payload(tokens, claims)), bound_to=id_hash.encode()
        )

    def _open(self, id_hash: str, sealed: bytes) -> dict[str, Any]:
        try:
            plain = self._sealer.open(sealed, bound_to=id_hash.encode())
        except Unsealable:
            # Another SESSION_SECRET (rotated), or a row tampered with: sign in again.
            raise SessionExpired("the session cannot be read; sign in again") from None
        data: dict[str, Any] = orjson.loads(plain)
        return data
