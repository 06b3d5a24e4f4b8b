"""Personal API keys: minted by a signed-in user, used as a Bearer token, revocable.

A key is `aip_` + 43 URL-safe characters (256 random bits). Only its HMAC is stored, so the
database alone cannot yield a working key. Verified keys are remembered per worker for
`CACHE_SECONDS`, which bounds how long a revoked or expired key keeps working anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth.errors import TokenExpired, TokenInvalid
from backend.auth.identity import Identity
from backend.auth.table import api_keys
from backend.database.audit_hook import AuditHook
from backend.errors import PortalError

PREFIX = "aip_"
SHOWN_CHARS = 8  # of the random part, in `prefix`: enough to tell keys apart, not to guess
CACHE_SECONDS = 2.0
_c = api_keys.c


class ApiKeyNotFound(PortalError):
    """No key of that id (that the caller may see)."""

    code = "key_not_found"


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """A key as its owner (or an admin) sees it: never the key itself."""

    id: str
    prefix: str
    name: str
    owner_hash: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


def looks_like_key(token: str) -> bool:
    """Whether a bearer token is one of ours (rather than a JWT)."""
    return token.startswith(PREFIX)


class ApiKeys:
    """Mint, list, revoke and verify keys in the `api_keys` table."""

    def __init__(
        self, engine: AsyncEngine, secret: bytes, *, cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        # Domain-separated from the user hashes, though derived from the same secret.
        self._secret = hmac.new(secret, b"portal-api-keys", hashlib.sha256).digest()
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, Identity]] = {}

    def _hash(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    async def create(
        self, owner: Identity, *, name: str, expires_at: datetime | None,
        audit: AuditHook | None = None,
    ) -> tuple[ApiKeyInfo, str]:
        """A new key for `owner`, with the owner's groups and cost centre as of now."""
        assert owner.user_hash is not None
        key = PREFIX + secrets.token_urlsafe(32)
        info = ApiKeyInfo(
            id=uuid.uuid4().hex, prefix=key[: len(PREFIX) + SHOWN_CHARS], name=name,
            owner_hash=owner.user_hash, created_at=datetime.now(UTC),
            expires_at=expires_at.astimezone(UTC) if expires_at else None,
            last_used_at=None, revoked_at=None,
        )
        async with self._engine.begin() as conn:
            await conn.execute(api_keys.insert().values(
                id=info.id, prefix=info.prefix, key_hash=self._hash(key), name=name,
                owner_hash=info.owner_hash, groups=orjson.dumps(sorted(owner.groups)).decode(),
                cost_center=owner.cost_center, created_at=info.created_at,
                expires_at=info.expires_at,
            ))
            if audit is not None:  # what identifies the key, never the key
                await audit(conn, None, _audited(info))
        return info, key

    async def list(self, owner_hash: str | None) -> list[ApiKeyInfo]:
        """The keys of one owner, or every key (owner None: admins), newest first."""
        query = select(*_INFO_COLUMNS).order_by(_c.created_at.desc())
        if owner_hash is not None:
            query = query.where(_c.owner_hash == owner_hash)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_info(row) for row in rows]

    async def revoke(
        self, key_id: str, owner_hash: str | None, audit: AuditHook | None = None
    ) -> ApiKeyInfo:
        """Revoke a key of `owner_hash` (any key when None); ApiKeyNotFound otherwise.

        Revoking a key already revoked changes nothing and is not audited again.
        """
        where = [_c.id == key_id]
        if owner_hash is not None:
            where.append(_c.owner_hash == owner_hash)
        async with self._engine.begin() as conn:
            revoked = await conn.execute(
                update(api_keys).where(*where, _c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            row = (await conn.execute(select(*_INFO_COLUMNS).where(*where))).first()
            if row is not None and revoked.rowcount and audit is not None:
                info = _info(row)
                await audit(conn, _audited(replace(info, revoked_at=None)), _audited(info))
        if row is None:
            raise ApiKeyNotFound("no such API key")
        return _info(row)

    async def identify(self, key: str) -> Identity:
        """The owner's identity for a valid key; TokenInvalid or TokenExpired otherwise."""
        now = self._clock()
        digest = self._hash(key)  # the cache holds no key either
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self._cache_seconds:
            identity = cached[1]
        else:
            identity = await self._load(digest)
            if len(self._cache) >= 10_000:
                self._cache.clear()
            self._cache[digest] = (now, identity)
        if identity.expires_at is not None and identity.expires_at <= time.time():
            raise TokenExpired("the API key has expired")
        return identity

    async def _load(self, digest: str) -> Identity:
        async with self._engine.begin() as conn:
            row = (await conn.execute(
                select(_c.id, _c.owner_hash, _c.groups, _c.cost_center, _c.expires_at,
                       _c.revoked_at).where(_c.key_hash == digest)
            )).first()
            if row is None or row.revoked_at is not None:
                raise TokenInvalid("the API key is not valid (unknown or revoked)")
            await conn.execute(
                update(api_keys).where(_c.id == row.id).values(last_used_at=datetime.now(UTC))
            )
        expires = _utc(row.expires_at)
        return Identity(
            method="api_key", user_id=row.owner_hash, groups=frozenset(orjson.loads(row.groups)),
            cost_center=row.cost_center, user_hash=row.owner_hash,
            expires_at=expires.timestamp() if expires else None, key_id=row.id,
        )


_INFO_COLUMNS = (
    _c.id, _c.prefix, _c.name, _c.owner_hash, _c.created_at, _c.expires_at, _c.last_used_at,
    _c.revoked_at,
)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; they were written in UTC.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _info(row: Any) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id, prefix=row.prefix, name=row.name, owner_hash=row.owner_hash,
        created_at=_utc(row.created_at) or datetime.now(UTC), expires_at=_utc(row.expires_at),
        last_used_at=_utc(row.last_used_at), revoked_at=_utc(row.revoked_at),
    )


def _audited(info: ApiKeyInfo) -> dict[str, object]:
    return {
        "id": info.id, "name": info.name, "prefix": info.prefix, "owner": info.owner_hash,
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
    }
