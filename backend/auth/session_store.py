"""The browser sign-in rows: sessions and logins in flight, on any worker's database.

Every statement here is one round trip on the shared engine. A login in flight is taken
with one DELETE, so its state (and the PKCE verifier behind it) serve exactly one callback
even when two workers receive the same one. A refresh is claimed with one conditional
UPDATE (a lease), so one worker at a time spends a session's refresh token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth.session_table import web_logins, web_sessions

_s = web_sessions.c
_l = web_logins.c
# A worker that claimed a refresh and died frees the session after this long.
REFRESH_LEASE_SECONDS = 15.0


def _epoch(value: datetime) -> float:
    # SQLite hands back naive datetimes; they were written in UTC.
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).timestamp()


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A stored session: its times (epoch seconds) and its sealed tokens and claims."""

    id_hash: str
    expires_at: float
    tokens_expire_at: float
    sealed: bytes


class SessionStore:
    """Reads and writes web_sessions and web_logins."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add_login(self, state_hash: str, sealed: bytes, *, expires_at: float) -> None:
        """Remember a login in flight (and sweep the expired ones, so neither table grows)."""
        now = _at(_now())
        async with self._engine.begin() as conn:
            await conn.execute(delete(web_logins).where(_l.expires_at < now))
            await conn.execute(delete(web_sessions).where(_s.expires_at < now))
            await conn.execute(insert(web_logins).values(
                state_hash=state_hash, expires_at=_at(expires_at), sealed=sealed,
            ))

    async def take_login(self, state_hash: str) -> bytes | None:
        """The sealed login of this state, deleted in the same step; None if unknown, used
        or expired."""
        async with self._engine.begin() as conn:
            row = (await conn.execute(
                select(_l.sealed, _l.expires_at).where(_l.state_hash == state_hash)
            )).first()
            if row is None:
                return None
            taken = await conn.execute(delete(web_logins).where(_l.state_hash == state_hash))
        # Another worker deleting it first leaves this one nothing: a state serves once.
        if taken.rowcount != 1 or _epoch(row.expires_at) <= _now():
            return None
        return bytes(row.sealed)

    async def add_session(
        self, id_hash: str, sealed: bytes, *, expires_at: float, tokens_expire_at: float
    ) -> None:
        """Store a new session."""
        async with self._engine.begin() as conn:
            await conn.execute(insert(web_sessions).values(
                id_hash=id_hash, created_at=_at(_now()), expires_at=_at(expires_at),
                tokens_expire_at=_at(tokens_expire_at), sealed=sealed,
            ))

    async def session(self, id_hash: str) -> SessionRow | None:
        """The session of this id hash, if there is one (expired or not)."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                select(_s.expires_at, _s.tokens_expire_at, _s.sealed).where(_s.id_hash == id_hash)
            )).first()
        if row is None:
            return None
        return SessionRow(
            id_hash, _epoch(row.expires_at), _epoch(row.tokens_expire_at), bytes(row.sealed)
        )

    async def claim_refresh(self, id_hash: str) -> bool:
        """Take the session's refresh lease; False while another worker holds it."""
        now = _at(_now())
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(web_sessions)
                .where(_s.id_hash == id_hash)
                .where(or_(_s.refresh_lease_until.is_(None), _s.refresh_lease_until < now))
                .values(refresh_lease_until=now + timedelta(seconds=REFRESH_LEASE_SECONDS))
            )
        return result.rowcount == 1

    async def refreshed(self, id_hash: str, sealed: bytes, *, tokens_expire_at: float) -> None:
        """Store the refreshed tokens and free the lease."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(web_sessions).where(_s.id_hash == id_hash).values(
                    sealed=sealed, tokens_expire_at=_at(tokens_expire_at),
                    refresh_lease_until=None,
                )
            )

    async def release(self, id_hash: str) -> None:
        """Free the refresh lease without new tokens (the refresh could not be done now)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(web_sessions).where(_s.id_hash == id_hash).values(refresh_lease_until=None)
            )

    async def delete(self, id_hash: str) -> None:
        """End a session (sign-out, expiry, a refused refresh)."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(web_sessions).where(_s.id_hash == id_hash))


def _now() -> float:
    return datetime.now(UTC).timestamp()
