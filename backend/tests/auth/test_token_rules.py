"""The claim rules of a verified JWT: leeway on exp and iat, claim mapping, and the cache of
verified tokens (one signature check per token, never past its exp)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from backend.auth.errors import TokenExpired, TokenInvalid
from backend.auth.identity import Identity, user_hash
from backend.auth.jwks import HttpKeySource, JWKSCache
from backend.auth.tokens import ClaimMap, JWTVerifier, TokenCache
from backend.tests.auth.idp import AUDIENCE, IdP


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def verifier(
    idp: IdP, session: aiohttp.ClientSession, *, leeway: float = 60, claims: ClaimMap | None = None
) -> JWTVerifier:
    keys = JWKSCache(HttpKeySource(session, timeout=2, issuer=idp.issuer), max_age=600,
                     stale_seconds=3600)
    return JWTVerifier(
        keys=keys, hs256_secret=None, algorithms=["RS256"], issuer=idp.issuer,
        audience=AUDIENCE, leeway=leeway, claims=claims or ClaimMap(), hash_secret=b"k",
    )


async def test_expiry_is_judged_with_the_leeway_and_without_it(
    idp: IdP, session: aiohttp.ClientSession
) -> None:
    just_expired = idp.token(exp=int(time.time()) - 30)
    identity = await verifier(idp, session, leeway=60).verify(just_expired)  # clock skew
    assert identity.user_id == "user-123"
    with pytest.raises(TokenExpired):
        await verifier(idp, session, leeway=0).verify(just_expired)
    with pytest.raises(TokenExpired):
        await verifier(idp, session, leeway=60).verify(idp.token(exp=int(time.time()) - 120))


async def test_a_token_issued_in_the_future_is_refused_beyond_the_leeway(
    idp: IdP, session: aiohttp.ClientSession
) -> None:
    now = int(time.time())
    with pytest.raises(TokenInvalid):
        await verifier(idp, session).verify(idp.token(iat=now + 3600, nbf=None))
    skewed = await verifier(idp, session).verify(idp.token(iat=now + 30, nbf=None))
    assert skewed.user_id == "user-123"


async def test_claims_are_read_where_the_identity_provider_puts_them(
    idp: IdP, session: aiohttp.ClientSession
) -> None:
    # Entra ID: the object id and preferred_username; groups as a space-separated string.
    entra = ClaimMap(user="oid", email="preferred_username", groups="roles")
    token = idp.token(sub="pairwise", oid="0f1e-2d3c", preferred_username="ann@corp.example",
                      roles="risk portal-admins", email=None)
    identity = await verifier(idp, session, claims=entra).verify(token)
    assert identity.user_id == "0f1e-2d3c" and identity.email == "ann@corp.example"
    assert identity.groups == frozenset({"risk", "portal-admins"})
    # Without an email the user is hashed by id, never left unhashed or unkeyed.
    no_email = await verifier(idp, session).verify(idp.token(sub="svc-7", email=None))
    assert no_email.email is None
    assert no_email.user_hash == user_hash(b"k", email=None, user_id="svc-7")
    assert no_email.user_hash != user_hash(b"other", email=None, user_id="svc-7")


async def test_a_verified_token_is_checked_once_then_served_from_the_cache(
    idp: IdP, session: aiohttp.ClientSession
) -> None:
    check = verifier(idp, session)
    calls: list[str] = []
    real = check._verify

    async def counted(token: str) -> Any:
        calls.append(token)
        return await real(token)

    check._verify = counted  # type: ignore[method-assign]
    token = idp.token()
    first, second = await check.verify(token), await check.verify(token)
    assert first == second and len(calls) == 1
    await check.verify(idp.token(sub="someone-else"))
    assert len(calls) == 2  # another token is checked on its own


def test_the_cache_forgets_a_token_at_its_expiry() -> None:
    now = [1000.0]
    cache = TokenCache(size=2, clock=lambda: now[0])
    identity = _identity(expires_at=1010.0)
    cache.put(b"a", identity)
    assert cache.get(b"a") == identity
    now[0] = 1010.0
    assert cache.get(b"a") is None  # at exp it must be verified again (and fail)
    cache.put(b"b", _identity(expires_at=2000.0))
    cache.put(b"c", _identity(expires_at=2000.0))
    cache.put(b"d", _identity(expires_at=2000.0))  # bounded: the oldest goes
    assert cache.get(b"b") is None and cache.get(b"d") is not None


def _identity(*, expires_at: float) -> Identity:
    return Identity(method="jwt", user_id="u", email=None, groups=frozenset(),
                    cost_center=None, user_hash="h", expires_at=expires_at)
