"""The JWKS cache against a local IdP: rotation by kid refetch, a flood of made-up kids,
one fetch at a time, and an IdP outage (stale keys serve, then 503)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from backend.auth.errors import AuthUnavailable, TokenInvalid
from backend.auth.jwks import HttpKeySource, JWKSCache, StaticKeySource
from backend.auth.tokens import ClaimMap, JWTVerifier
from backend.tests.auth.conftest import bearer, jwt_settings
from backend.tests.auth.idp import AUDIENCE, IdP, rsa_key
from backend.tests.chat.conftest import SPECIALISTS
from backend.tests.resilience.test_breaker import Clock


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def verifier(idp: IdP, session: aiohttp.ClientSession, clock: Clock, **cache: Any) -> JWTVerifier:
    keys = JWKSCache(
        HttpKeySource(session, timeout=2, issuer=idp.issuer),
        max_age=cache.pop("max_age", 600), stale_seconds=cache.pop("stale", 3600), clock=clock,
    )
    return JWTVerifier(
        keys=keys, hs256_secret=None, algorithms=["RS256", "ES256"], issuer=idp.issuer,
        audience=AUDIENCE, leeway=0, claims=ClaimMap(), hash_secret=b"k",
    )


async def test_a_rotated_key_is_picked_up_through_the_kid_refetch(
    idp: IdP, session: aiohttp.ClientSession
) -> None:
    check = verifier(idp, session, Clock())
    assert (await check.verify(idp.token())).user_id == "user-123"
    assert idp.jwks_fetches == 1
    new = rsa_key()
    idp.keys = [new]  # rotation: the old key is gone, a new kid signs
    assert (await check.verify(idp.token(new, sub="after"))).user_id == "after"
    assert idp.jwks_fetches == 2


async def test_made_up_kids_cost_one_fetch_per_30_seconds(
    idp: IdP, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    check = verifier(idp, session, clock)
    await check.verify(idp.token())
    forged = idp.token(rsa_key())
    tokens = [_with_kid(forged, f"made-up-{i}") for i in range(1000)]

    async def attempt(token: str) -> None:
        with pytest.raises(TokenInvalid):
            await check.verify(token)

    await asyncio.gather(*(attempt(t) for t in tokens))
    assert idp.jwks_fetches == 2  # the first load and one refetch
    clock.now += 29
    await asyncio.gather(*(attempt(t) for t in tokens[:100]))
    assert idp.jwks_fetches == 2
    clock.now += 2  # 31 s after the refetch
    await asyncio.gather(*(attempt(t) for t in tokens[:100]))
    assert idp.jwks_fetches == 3


def _with_kid(token: str, kid: str) -> str:
    import base64
    import json

    head, body, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    header["kid"] = kid
    new_head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{new_head}.{body}.{signature}"


async def test_concurrent_first_requests_share_one_fetch(
    idp: IdP, session: aiohttp.ClientSession
) -> None:
    check = verifier(idp, session, Clock())
    tokens = [idp.token(sub=f"user-{i}") for i in range(50)]
    identities = await asyncio.gather(*(check.verify(t) for t in tokens))
    assert {i.user_id for i in identities} == {f"user-{i}" for i in range(50)}
    assert (idp.jwks_fetches, idp.discovery_fetches) == (1, 1)


async def test_the_idp_down_stale_keys_serve_then_503(
    idp: IdP, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    check = verifier(idp, session, clock, max_age=60, stale=300)
    cached = idp.token(sub="cached")
    await check.verify(cached)
    idp.down = True
    clock.now += 61  # the keys are due for a refresh, which fails
    assert (await check.verify(idp.token(sub="fresh"))).user_id == "fresh"
    assert check.keys is not None and check.keys.last_error is not None
    clock.now += 200  # still inside the stale bound
    assert (await check.verify(idp.token(sub="later"))).user_id == "later"
    clock.now += 101  # past it: every token, cached ones too, gets 503 auth_unavailable
    with pytest.raises(AuthUnavailable):
        await check.verify(idp.token(sub="too-late"))
    with pytest.raises(AuthUnavailable):
        await check.verify(cached)
    idp.down = False
    clock.now += 6  # past the failure backoff: the IdP is asked again, and answers
    assert (await check.verify(idp.token(sub="back"))).user_id == "back"


async def test_the_cache_honours_a_shorter_max_age(
    idp: IdP, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    idp.max_age = 120
    check = verifier(idp, session, clock)
    await check.verify(idp.token(sub="a"))
    clock.now += 100
    await check.verify(idp.token(sub="b"))
    assert idp.jwks_fetches == 1
    clock.now += 21
    await check.verify(idp.token(sub="c"))
    assert idp.jwks_fetches == 2


async def test_a_static_key_set_needs_no_idp(idp: IdP) -> None:
    jwks = {"keys": [k.public_jwk() for k in idp.keys]}
    keys = JWKSCache(StaticKeySource(jwks), max_age=600, stale_seconds=0)
    check = JWTVerifier(
        keys=keys, hs256_secret=None, algorithms=["RS256"], issuer=idp.issuer,
        audience=AUDIENCE, leeway=0, claims=ClaimMap(groups="realm_access.roles"),
        hash_secret=b"k",
    )
    token = idp.token(groups=None, realm_access={"roles": ["a", "b"]})
    assert (await check.verify(token)).groups == {"a", "b"}
    assert idp.jwks_fetches == 0


async def test_the_portal_with_its_idp_down_answers_503_and_ready_says_so(
    idp: IdP, portal_factory: Any
) -> None:
    idp.down = True
    portal = await portal_factory(**jwt_settings(idp))  # start-up does not fail
    ready = await portal.client.get("/ready")
    assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
    response = await portal.client.post(
        "/chat/send", json={"specialist_id": SPECIALISTS["openai"], "message": "hi"},
        headers=bearer(idp.token()),
    )
    assert response.status_code == 503 and response.json()["error"] == "auth_unavailable"
    assert portal.fakes["openai"].requests == []


async def test_a_jwks_url_needs_no_discovery_and_a_foreign_discovery_is_refused(
    idp: IdP, session: aiohttp.ClientSession
) -> None:
    direct = JWKSCache(HttpKeySource(session, timeout=2, jwks_url=f"{idp.url}/jwks"),
                       max_age=600, stale_seconds=0)
    assert (await direct.key(idp.keys[0].kid)).kid == idp.keys[0].kid
    assert idp.discovery_fetches == 0
    # Discovery for an issuer the document does not name: no keys, so 503, not a bypass.
    foreign = JWKSCache(HttpKeySource(session, timeout=2, issuer=f"{idp.url}/other"),
                        max_age=600, stale_seconds=0)
    with pytest.raises(AuthUnavailable):
        await foreign.key(idp.keys[0].kid)


@pytest.mark.parametrize("algorithm", ["PS256", "EdDSA", "ES256"])
async def test_pinned_algorithms_must_fit_the_key(idp: IdP, algorithm: str) -> None:
    import json

    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    private: Any
    if algorithm == "PS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    jwk["kid"] = "k"
    keys = JWKSCache(StaticKeySource({"keys": [jwk]}), max_age=600, stale_seconds=0)

    def check(pinned: list[str]) -> JWTVerifier:
        return JWTVerifier(keys=keys, hs256_secret=None, algorithms=pinned, issuer=idp.issuer,
                           audience=AUDIENCE, leeway=0, claims=ClaimMap(), hash_secret=b"k")

    token = pyjwt.encode(idp.claims(), private, algorithm=algorithm, headers={"kid": "k"})
    assert (await check([algorithm]).verify(token)).user_id == "user-123"
    with pytest.raises(TokenInvalid):  # a key that fits, but an algorithm not pinned
        await check(["RS256"]).verify(token)
