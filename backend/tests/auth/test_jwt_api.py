"""AUTH_MODE=jwt on the chat endpoints: good tokens are believed, every attack is a 401
with RFC 6750's challenge, and nothing reaches the provider."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from backend.tests.auth.conftest import bearer, jwt_settings
from backend.tests.auth.idp import AUDIENCE, IdP, ec_key, rsa_key
from backend.tests.chat.conftest import SPECIALISTS, Portal
from backend.tests.transports.conftest import usage_rows
from backend.usage.identity import hash_email

CHAT = {"specialist_id": SPECIALISTS["openai"], "message": "Hello"}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _alg_none(idp: IdP) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(idp.claims())}."


def _hs256_with_public_key(idp: IdP) -> str:
    # The confusion attack: the RSA public key (as PEM, as the JWK's bytes) used as an
    # HMAC secret. PyJWT refuses to sign with a PEM, so sign the HMAC by hand.
    import hashlib
    import hmac

    pem = idp.keys[0].private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = _b64({"alg": "HS256", "typ": "JWT", "kid": idp.keys[0].kid})
    body = _b64(idp.claims())
    signature = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _tampered(idp: IdP) -> str:
    head, _, signature = idp.token().split(".")
    return f"{head}.{_b64(idp.claims(groups=['portal-admins']))}.{signature}"


def _foreign_key(idp: IdP) -> str:
    # Same kid as the published key, signed by another key.
    stranger = rsa_key(kid=idp.keys[0].kid)
    return idp.token(stranger)


ATTACKS: dict[str, tuple[Callable[[IdP], dict[str, str]], str]] = {
    "no token": (lambda idp: {}, "token_missing"),
    "alg none": (lambda idp: bearer(_alg_none(idp)), "token_invalid"),
    "HS256 with the RSA public key": (
        lambda idp: bearer(_hs256_with_public_key(idp)), "token_invalid"),
    "wrong issuer": (lambda idp: bearer(idp.token(iss="http://127.0.0.1:1/evil")),
                     "token_invalid"),
    "wrong audience": (lambda idp: bearer(idp.token(aud="another-app")), "token_invalid"),
    "expired": (lambda idp: bearer(idp.token(exp=int(time.time()) - 3600)), "token_expired"),
    "nbf in the future": (lambda idp: bearer(idp.token(nbf=int(time.time()) + 3600)),
                          "token_invalid"),
    "no exp": (lambda idp: bearer(idp.token(exp=None)), "token_invalid"),
    "tampered payload": (lambda idp: bearer(_tampered(idp)), "token_invalid"),
    "key not in the set": (lambda idp: bearer(_foreign_key(idp)), "token_invalid"),
    "unknown kid": (lambda idp: bearer(idp.token(rsa_key())), "token_invalid"),
    "garbage": (lambda idp: bearer("not.a.jwt"), "token_invalid"),
    "oversize header": (lambda idp: bearer("x" * 9000), "token_invalid"),
    "basic scheme": (lambda idp: {"Authorization": "Basic dXNlcjpwYXNz"}, "token_invalid"),
    "wrong typ": (lambda idp: bearer(idp.token(headers={"typ": "dpop+jwt"})), "token_invalid"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_every_attack_is_a_401_and_nothing_goes_upstream(
    attack: str, idp: IdP, jwt_portal: Portal, caplog: pytest.LogCaptureFixture
) -> None:
    make, code = ATTACKS[attack]
    headers = make(idp)
    response = await jwt_portal.client.post("/chat/send", json=CHAT, headers=headers)
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == code
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="ai-portal"')
    if code != "token_missing":
        assert 'error="invalid_token"' in challenge and "error_description=" in challenge
    token = headers.get("Authorization", "").partition(" ")[2]
    if token:  # never echoed back nor logged, not even in part
        assert token[-20:] not in response.text and token[-20:] not in challenge
        assert token[-20:] not in caplog.text
    assert jwt_portal.fakes["openai"].requests == []
    assert await usage_rows(jwt_portal, 0, settle=0.1) == []


async def test_an_rs256_token_is_believed_on_send_stream_and_me(
    idp: IdP, jwt_portal: Portal
) -> None:
    token = idp.token(cost_center="CC-42", groups=["staff", "risk"])
    sent = await jwt_portal.client.post("/chat/send", json=CHAT, headers=bearer(token))
    assert sent.status_code == 200, sent.text
    streamed = await jwt_portal.client.post("/chat/stream", json=CHAT, headers=bearer(token))
    assert streamed.status_code == 200 and '"is_final": true' in streamed.text.replace(
        '"is_final":true', '"is_final": true')
    me = (await jwt_portal.client.get("/me", headers=bearer(token))).json()
    assert me == {
        "user_id": "user-123", "email": "Alice@Example.com", "name": None,
        "groups": ["risk", "staff"], "is_admin": False, "cost_center": "CC-42",
        "auth_method": "jwt",
        "expires_at": me["expires_at"],
    }
    rows = await usage_rows(jwt_portal, 2)
    expected_hash = hash_email(b"test-secret", "alice@example.com")
    assert [(r["user_email_hash"], r["cost_center"], r["auth_method"]) for r in rows] == [
        (expected_hash, "CC-42", "jwt")
    ] * 2
    # Two requests, one signature check and one key fetch: the rest came from the caches.
    assert idp.jwks_fetches == 1


async def test_es256_and_at_jwt_access_tokens_and_the_user_id_hash(
    portal_factory: Any,
) -> None:
    from backend.tests.auth import idp as idp_module

    async with idp_module.start(ec_key()) as provider:
        portal = await portal_factory(**jwt_settings(provider))
        token = provider.token(email=None, headers={"typ": "at+jwt"})
        response = await portal.client.post("/chat/send", json=CHAT, headers=bearer(token))
        assert response.status_code == 200, response.text
        rows = await usage_rows(portal, 1)
    # No email claim: the keyed hash of the user id, never a default user.
    assert rows[0]["user_email_hash"] is not None
    assert rows[0]["user_email_hash"] != hash_email(b"test-secret", "user-123")


async def test_hs256_mode_takes_its_secret_and_refuses_rs256(
    idp: IdP, portal_factory: Any
) -> None:
    secret = "s" * 40
    portal = await portal_factory(
        auth_mode="jwt", jwt_hs256_secret=secret, jwt_issuer="https://hs.example",
        jwt_audience=AUDIENCE,
    )
    claims = idp.claims(iss="https://hs.example")
    good = jwt.encode(claims, secret, algorithm="HS256")
    ok = await portal.client.post("/chat/send", json=CHAT, headers=bearer(good))
    assert ok.status_code == 200, ok.text
    rsa_signed = jwt.encode(claims, idp.keys[0].private, algorithm="RS256")
    refused = await portal.client.post("/chat/send", json=CHAT, headers=bearer(rsa_signed))
    assert refused.status_code == 401 and refused.json()["error"] == "token_invalid"
    assert len(portal.fakes["openai"].requests) == 1


async def test_open_endpoints_stay_open_and_the_rest_need_a_token(jwt_portal: Portal) -> None:
    for path in ("/health", "/ready", "/docs", "/redoc", "/openapi.json"):
        assert (await jwt_portal.client.get(path)).status_code == 200, path
    for path in ("/specialists", "/me", "/v1/models", "/keys"):
        response = await jwt_portal.client.get(path)
        assert response.status_code == 401, path
    v1 = await jwt_portal.client.post("/v1/chat/completions", json={
        "model": SPECIALISTS["openai"], "messages": [{"role": "user", "content": "hi"}]})
    assert v1.status_code == 401 and v1.json()["error"]["code"] == "token_missing"
    assert jwt_portal.fakes["openai"].requests == []


async def test_the_user_bucket_is_the_verified_identity_not_a_header(
    idp: IdP, portal_factory: Any
) -> None:
    portal = await portal_factory(**jwt_settings(idp), rate_limit_user_requests=1)
    alice = bearer(idp.token(sub="alice", email="alice@example.com"))
    bob = bearer(idp.token(sub="bob", email="bob@example.com"))
    first = await portal.client.post("/chat/send", json=CHAT, headers=alice)
    assert first.status_code == 200
    # A header naming someone else changes nothing: the token decides the bucket.
    spoofed = await portal.client.post(
        "/chat/send", json=CHAT, headers={**alice, "X-User-Email": "bob@example.com"})
    assert spoofed.status_code == 429
    assert (await portal.client.post("/chat/send", json=CHAT, headers=bob)).status_code == 200
    rows = await usage_rows(portal, 2)
    assert {r["user_email_hash"] for r in rows} == {
        hash_email(b"test-secret", "alice@example.com"),
        hash_email(b"test-secret", "bob@example.com"),
    }


async def test_none_mode_warns_at_start_up_and_mints_no_keys(
    portal_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    portal = await portal_factory()
    assert "AUTH_MODE=none" in caplog.text
    minted = await portal.client.post(
        "/keys", json={"name": "x"}, headers={"X-User-Email": "ceo@example.com"})
    assert minted.status_code == 403 and minted.json()["error"] == "forbidden"
