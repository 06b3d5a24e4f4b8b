"""Verifying a JWT (OIDC access or ID token) into an `Identity`, with a verified-token cache.

The key is chosen by the token's `kid` from the issuer's set, and the algorithms allowed are
the pinned ones that fit that key's type: the token's own `alg` only has to be one of them,
it never picks how to verify (so an RS256 public key can never be used as an HS256 secret).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from backend.auth.errors import TokenExpired, TokenInvalid
from backend.auth.identity import AuthMethod, Identity, user_hash
from backend.auth.jwks import JWKSCache, SigningKey

# RFC 9068 access tokens say `at+jwt`; ID tokens and most access tokens say `JWT`.
ACCEPTED_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
TOKEN_CACHE_SIZE = 10_000


def fits(algorithm: str, key: SigningKey) -> bool:
    """Whether a pinned algorithm can be verified with this key (kty, curve, the JWK's alg)."""
    if key.alg is not None and key.alg != algorithm:
        return False
    if algorithm.startswith(("RS", "PS")):
        return key.kty == "RSA"
    if algorithm in _CURVES:
        return key.kty == "EC" and key.crv == _CURVES[algorithm]
    if algorithm == "EdDSA":
        return key.kty == "OKP"
    return False


@dataclass(frozen=True, slots=True)
class ClaimMap:
    """Which claims hold the user id, email, groups and cost centre (dotted paths work)."""

    user: str = "sub"
    email: str = "email"
    groups: str = "groups"
    cost_center: str | None = None
    name: str = "name"


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by dotted path (`realm_access.roles`) when no claim has the name."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def groups_of(value: Any) -> frozenset[str]:
    """Groups from a list, or a space-separated string; anything else is no groups."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(str(v) for v in value if isinstance(v, str | int))
    return frozenset()


def identity_from_claims(
    claims: Mapping[str, Any], names: ClaimMap, secret: bytes, method: AuthMethod = "jwt"
) -> Identity:
    """The identity a verified token's claims describe."""
    raw_user = claim(claims, names.user)
    if not isinstance(raw_user, str | int) or not str(raw_user):
        raise TokenInvalid(f"the token has no `{names.user}` claim")
    user_id = str(raw_user)
    email = claim(claims, names.email)
    email = email if isinstance(email, str) and email.strip() else None
    cost = claim(claims, names.cost_center) if names.cost_center else None
    name = claim(claims, names.name)
    return Identity(
        method=method, user_id=user_id, email=email,
        name=name if isinstance(name, str) and name.strip() else None,
        groups=groups_of(claim(claims, names.groups)),
        cost_center=str(cost) if isinstance(cost, str | int) else None,
        user_hash=user_hash(secret, email=email, user_id=user_id),
        expires_at=float(claims["exp"]),
    )


class TokenCache:
    """Verified tokens by SHA-256, until their `exp`: one signature check per token."""

    def __init__(self, size: int = TOKEN_CACHE_SIZE, clock: Callable[[], float] = time.time):
        self._size = size
        self._clock = clock
        self._entries: dict[bytes, Identity] = {}

    def get(self, digest: bytes) -> Identity | None:
        """The identity of a token verified before and not yet expired."""
        identity = self._entries.get(digest)
        if identity is None:
            return None
        if identity.expires_at is not None and identity.expires_at <= self._clock():
            del self._entries[digest]
            return None
        return identity

    def put(self, digest: bytes, identity: Identity) -> None:
        """Remember a verified token (the oldest goes when full)."""
        if len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]
        self._entries[digest] = identity


class JWTVerifier:
    """Verifies bearer JWTs against the issuer's keys (or the HS256 secret)."""

    def __init__(
        self, *, keys: JWKSCache | None, hs256_secret: bytes | None,
        algorithms: Sequence[str], issuer: str, audience: str, leeway: float,
        claims: ClaimMap, hash_secret: bytes,
    ) -> None:
        assert (keys is None) != (hs256_secret is None), "one key source, never both"
        self.keys = keys
        self._hs256 = hs256_secret
        self._algorithms = tuple(algorithms)
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._claims = claims
        self._secret = hash_secret
        self.cache = TokenCache()

    def for_audience(self, audience: str) -> JWTVerifier:
        """This verifier for another audience, sharing its keys: a browser session's ID
        tokens are for the client id, bearer tokens for the API (JWT_AUDIENCE)."""
        return JWTVerifier(
            keys=self.keys, hs256_secret=self._hs256, algorithms=self._algorithms,
            issuer=self._issuer, audience=audience, leeway=self._leeway, claims=self._claims,
            hash_secret=self._secret,
        )

    async def verify(self, token: str) -> Identity:
        """The identity a valid token proves; TokenInvalid / TokenExpired / AuthUnavailable."""
        digest = hashlib.sha256(token.encode()).digest()
        cached = self.cache.get(digest)
        if cached is not None:
            if self.keys is not None:
                await self.keys.ensure_usable()  # past the stale bound, cached tokens stop too
            return cached
        identity = await self._verify(token)
        self.cache.put(digest, identity)
        return identity

    async def _verify(self, token: str) -> Identity:
        claims = await self.verified_claims(token)
        return identity_from_claims(claims, self._claims, self._secret)

    def identity(self, claims: Mapping[str, Any], method: AuthMethod) -> Identity:
        """The identity verified claims describe, mapped by the configured claim names."""
        return identity_from_claims(claims, self._claims, self._secret, method)

    async def verified_claims(self, token: str) -> dict[str, Any]:
        """A token's claims once its signature, issuer, audience and times check (uncached:
        for callers that need more than the identity, such as an ID token's nonce)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenInvalid("the token is not a well-formed JWT") from None
        alg, typ, kid = header.get("alg"), header.get("typ"), header.get("kid")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise TokenInvalid("unsigned tokens are not accepted")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES):
            raise TokenInvalid("the token's type is neither JWT nor at+jwt")
        key: Any
        if self._hs256 is not None:
            key, allowed = self._hs256, ["HS256"]
        else:
            assert self.keys is not None
            signing = await self.keys.key(kid if isinstance(kid, str) else None)
            key, allowed = signing.key, [a for a in self._algorithms if fits(a, signing)]
        if alg not in allowed:
            raise TokenInvalid("the token's algorithm is not allowed for its key")
        return self._decode(token, key, allowed)

    def _decode(self, token: str, key: Any, allowed: list[str]) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=allowed, audience=self._audience, issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"], "verify_iat": True},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenInvalid("the token is not valid yet") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenInvalid(f"the token has no `{exc.claim}` claim") from None
        except jwt.InvalidAudienceError:
            raise TokenInvalid("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise TokenInvalid("the token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenInvalid("the token's signature does not verify") from None
        except jwt.InvalidTokenError:
            raise TokenInvalid("the token is not valid") from None
        iat = claims.get("iat")
        if isinstance(iat, int | float) and iat > time.time() + self._leeway:
            raise TokenInvalid("the token was issued in the future")
        return claims

