"""The identity provider's signing keys: fetched over the shared session, cached, refreshed.

One refresh at a time; an unknown `kid` triggers one refetch at most every
`kid_refetch_seconds` (so made-up key ids cannot hammer the IdP); while the IdP is down the
last good keys serve until `stale_seconds` past their freshness, then AuthUnavailable.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import jwt

from backend.auth.errors import AuthUnavailable, TokenInvalid

log = logging.getLogger(__name__)

KID_REFETCH_SECONDS = 30.0
# After a failed fetch, requests wait this long before trying the IdP again.
FAILURE_BACKOFF_SECONDS = 5.0
MAX_KEYS = 100  # a key set larger than this is not an IdP's
_MAX_AGE = re.compile(r"max-age\s*=\s*(\d+)", re.IGNORECASE)


class KeySetUnavailable(Exception):
    """The key set could not be fetched or parsed (logged; the cache decides what follows)."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One usable public key of the set, with what it may verify."""

    kid: str | None
    kty: str
    crv: str | None
    alg: str | None  # the JWK's own `alg`, when it pins one
    key: Any  # a `cryptography` public key object


class KeySource(Protocol):
    """Where the key set comes from: `fetch` returns the JWK Set and its max-age, if any."""

    async def fetch(self) -> tuple[Mapping[str, Any], float | None]:
        """The current JWK Set."""
        ...


class StaticKeySource:
    """A key set written in settings, for sites with no reachable IdP."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._jwks = jwks

    async def fetch(self) -> tuple[Mapping[str, Any], float | None]:
        """The configured set, fresh forever."""
        return self._jwks, math.inf


class HttpKeySource:
    """A JWKS URL, or an issuer whose discovery document names it."""

    def __init__(
        self, session: aiohttp.ClientSession, *, timeout: float,
        issuer: str | None = None, jwks_url: str | None = None,
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._issuer = issuer.rstrip("/") if issuer else None
        self._jwks_url = jwks_url

    async def fetch(self) -> tuple[Mapping[str, Any], float | None]:
        """GET the key set (after discovery when only the issuer is known)."""
        if self._jwks_url is None:
            assert self._issuer is not None
            document = await discover(self._session, self._issuer, self._timeout)
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("http://", "https://")):
                raise KeySetUnavailable("the discovery document has no jwks_uri")
            self._jwks_url = jwks_uri  # stable for an issuer; the keys behind it rotate
        return await get_json(self._session, self._jwks_url, self._timeout)


async def discover(
    session: aiohttp.ClientSession, issuer: str, limit: aiohttp.ClientTimeout
) -> dict[str, Any]:
    """The issuer's OIDC discovery document (KeySetUnavailable when it cannot be had)."""
    issuer = issuer.rstrip("/")
    document, _ = await get_json(session, f"{issuer}/.well-known/openid-configuration", limit)
    # OIDC Discovery 4.3: the document must be the issuer's own.
    if str(document.get("issuer", "")).rstrip("/") != issuer:
        raise KeySetUnavailable("the discovery document names another issuer")
    return document


async def get_json(
    session: aiohttp.ClientSession, url: str, limit: aiohttp.ClientTimeout
) -> tuple[dict[str, Any], float | None]:
    """GET a JSON object from the IdP, and the max-age its Cache-Control gives."""
    try:
        async with session.get(url, timeout=limit) as response:
            if response.status != 200:
                raise KeySetUnavailable(f"{url} answered {response.status}")
            body = await response.json(content_type=None)
            cache_control = response.headers.get("Cache-Control", "")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise KeySetUnavailable(f"{url}: {type(exc).__name__}") from exc
    if not isinstance(body, dict):
        raise KeySetUnavailable(f"{url} did not answer a JSON object")
    match = _MAX_AGE.search(cache_control)
    return body, float(match.group(1)) if match else None


def parse_key_set(jwks: Mapping[str, Any]) -> list[SigningKey]:
    """The set's signature keys; encryption keys and keys PyJWT cannot read are skipped."""
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        raise KeySetUnavailable("not a JWK Set (no `keys` list)")
    keys: list[SigningKey] = []
    for entry in entries[:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") == "oct":
            continue  # a shared secret never comes from a key set: HS256 has its own setting
        try:
            parsed = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            log.warning("skipping an unreadable key (kid %r) in the key set", entry.get("kid"))
            continue
        kid = entry.get("kid")
        keys.append(SigningKey(
            kid=kid if isinstance(kid, str) else None, kty=str(entry.get("kty")),
            crv=entry.get("crv"), alg=entry.get("alg"), key=parsed.key,
        ))
    return keys


class JWKSCache:
    """The cached key set of one issuer."""

    def __init__(
        self, source: KeySource, *, max_age: float, stale_seconds: float,
        kid_refetch_seconds: float = KID_REFETCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._max_age = max_age
        self._stale = stale_seconds
        self._kid_refetch = kid_refetch_seconds
        self._clock = clock
        self._keys: list[SigningKey] = []
        self._loaded = False
        self._fresh_until = -math.inf
        self._retry_at = -math.inf
        self._last_kid_refetch = -math.inf
        self._generation = 0
        self._lock = asyncio.Lock()
        self.fetches = 0  # attempts, for tests and /ready
        self.last_error: str | None = None

    def ready(self) -> bool:
        """Whether keys are loaded and not past the stale bound."""
        return self._loaded and self._clock() <= self._fresh_until + self._stale

    async def ensure_usable(self) -> None:
        """Refresh when due; raise AuthUnavailable when no good-enough keys are left."""
        now = self._clock()
        if now < self._fresh_until:
            return
        if now >= self._retry_at:
            await self._refresh(self._generation)
        if not self.ready():
            raise AuthUnavailable(
                "the identity provider's signing keys are unavailable; try again shortly"
            )

    async def key(self, kid: str | None) -> SigningKey:
        """The key a token names; one refetch for an unknown kid, at most every 30 s."""
        await self.ensure_usable()
        found = self._find(kid)
        if found is None and self._clock() - self._last_kid_refetch >= self._kid_refetch:
            self._last_kid_refetch = self._clock()
            await self._refresh(self._generation)
            await self.ensure_usable()
            found = self._find(kid)
        if found is None:
            raise TokenInvalid("the token is signed with a key the issuer does not publish")
        return found

    def _find(self, kid: str | None) -> SigningKey | None:
        if kid is None:
            # No kid: only unambiguous with a single key.
            return self._keys[0] if len(self._keys) == 1 else None
        return next((k for k in self._keys if k.kid == kid), None)

    async def _refresh(self, seen: int) -> None:
        async with self._lock:
            if self._generation != seen:
                return  # another request refreshed (or failed to) while this one waited
            try:
                await self._fetch()
            finally:
                self._generation += 1  # bumped once done, so waiters see it and skip

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            jwks, max_age = await self._source.fetch()
            keys = parse_key_set(jwks)
        except KeySetUnavailable as exc:
            self.last_error = str(exc)
            self._retry_at = self._clock() + FAILURE_BACKOFF_SECONDS
            log.warning("JWKS refresh failed (%s); %s", exc,
                        "serving the last keys" if self._loaded else "no keys yet")
            return
        # Honour the IdP's max-age, bounded by ours (and at least a minute, or ours).
        age = self._max_age if max_age is None else min(max_age, self._max_age)
        age = max(age, min(60.0, self._max_age))
        self._keys, self._loaded, self.last_error = keys, True, None
        self._fresh_until = self._clock() + age
        self._retry_at = -math.inf
