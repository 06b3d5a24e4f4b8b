"""The audit chain: an append-only, tamper-evident record of every admin action.

Specialists call `append`; budgets and API keys, which sit below governance, take an
`audited(...)` hook from their routes, so the entry commits with the change it records.
Each entry's hash covers its content and the previous entry's hash, and the `audit`
counter in `governance_state` holds the number of entries, so an edited, deleted or
truncated entry breaks a link that `verify` reports.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.auth.identity import Identity
from backend.database.audit_hook import AuditHook
from backend.governance.errors import guarded
from backend.governance.tables import audit_log, governance_state

GENESIS = "0" * 64
COLUMNS = (
    "seq", "at", "actor", "actor_method", "action", "target", "before", "after",
    "request_id", "prev_hash", "hash",
)
_c = audit_log.c


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: a keyed user hash (never an email), or a named credential or command."""

    id: str
    method: str

    @classmethod
    def of(cls, identity: Identity) -> Actor:
        """The actor for a verified identity (ADMIN_TOKEN is one shared actor)."""
        if identity.method == "admin_token":
            return cls("admin_token", "admin_token")
        return cls(identity.user_hash or "anonymous", identity.method)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One admin action: who, what, on what, the state before and after, which request."""

    actor: Actor
    action: str
    target: str
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Broken:
    """The first link of the chain that does not hold."""

    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class Verification:
    """What `verify` found: how many entries it checked, and the first broken link if any."""

    checked: int
    broken: Broken | None


def _json(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _utc(stamp: datetime) -> datetime:
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def entry_hash(row: Mapping[str, Any]) -> str:
    """SHA-256 over an entry's content (as stored) and its predecessor's hash."""
    content = [
        row["seq"], _utc(row["at"]).isoformat(), row["actor"], row["actor_method"],
        row["action"], row["target"], row["before"], row["after"], row["request_id"],
        row["prev_hash"],
    ]
    return hashlib.sha256(orjson.dumps(content)).hexdigest()


async def append(conn: AsyncConnection, event: AuditEvent) -> int:
    """Add one entry inside the caller's transaction (it commits with the change it records).

    Bumping the counter first takes its row lock (PostgreSQL) or the write lock (SQLite),
    so concurrent appenders queue and each links to the one before.
    """
    seq = (await conn.execute(
        update(governance_state).where(governance_state.c.name == "audit")
        .values(value=governance_state.c.value + 1).returning(governance_state.c.value)
    )).scalar_one()
    prev = (await conn.execute(select(_c.hash).where(_c.seq == seq - 1))).scalar()
    row: dict[str, Any] = {
        "seq": seq, "at": datetime.now(UTC),
        "actor": event.actor.id, "actor_method": event.actor.method, "action": event.action,
        "target": event.target, "before": _json(event.before), "after": _json(event.after),
        "request_id": event.request_id, "prev_hash": prev or GENESIS,
    }
    row["hash"] = entry_hash(row)
    await conn.execute(audit_log.insert().values(**row))
    return int(seq)


def audited(actor: Actor, action: str, target: str, request_id: str | None) -> AuditHook:
    """A hook that appends this action, with what the changing code saw before and after."""

    async def hook(
        conn: AsyncConnection, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
    ) -> int:
        return await append(conn, AuditEvent(actor, action, target, before, after, request_id))

    return hook


async def verify(engine: AsyncEngine, *, chunk_rows: int = 1_000) -> Verification:
    """Walk the chain in order; the first entry whose hash, link or number is wrong."""
    expected_seq, prev, checked = 1, GENESIS, 0
    async with engine.connect() as conn:
        count = (await conn.execute(
            select(governance_state.c.value).where(governance_state.c.name == "audit")
        )).scalar_one()
        result = await conn.stream(
            select(audit_log).order_by(_c.seq).execution_options(yield_per=chunk_rows)
        )
        async for row in result.mappings():
            if row["seq"] != expected_seq:
                return Verification(checked, Broken(expected_seq, "entry missing (deleted)"))
            if row["prev_hash"] != prev:
                return Verification(checked, Broken(row["seq"], "link to the previous one broken"))
            if entry_hash(dict(row)) != row["hash"]:
                return Verification(checked, Broken(row["seq"], "content does not match its hash"))
            prev, expected_seq, checked = row["hash"], expected_seq + 1, checked + 1
    if checked != count:
        return Verification(checked, Broken(checked + 1, f"entries {checked + 1}..{count} missing"))
    return Verification(checked, None)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters for reading the chain; every one optional."""

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def where(self) -> list[ColumnElement[bool]]:
        """The SQL conditions these filters make."""
        conditions: list[ColumnElement[bool]] = []
        if self.actor is not None:
            conditions.append(_c.actor == self.actor)
        if self.action is not None:
            conditions.append(_c.action == self.action)
        if self.target is not None:
            conditions.append(_c.target == self.target)
        if self.start is not None:
            conditions.append(_c.at >= self.start)
        if self.end is not None:
            conditions.append(_c.at < self.end)
        return conditions


def as_dict(row: Row[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """An entry as the API shows it: before/after parsed back to objects."""
    data = dict(row._mapping if isinstance(row, Row) else row)
    data["at"] = _utc(data["at"])
    for key in ("before", "after"):
        data[key] = None if data[key] is None else orjson.loads(data[key])
    return data


@guarded
async def page(
    engine: AsyncEngine, query: AuditQuery, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of entries, newest first, and how many match in all."""
    async with engine.connect() as conn:
        total = (await conn.execute(
            select(func.count()).select_from(audit_log).where(*query.where())
        )).scalar_one()
        rows = (await conn.execute(
            select(audit_log).where(*query.where()).order_by(_c.seq.desc())
            .limit(limit).offset(offset)
        )).all()
    return [as_dict(row) for row in rows], int(total)


async def rows_in_order(engine: AsyncEngine, query: AuditQuery) -> AsyncIterator[Row[Any]]:
    """Every matching entry, oldest first, streamed (the CSV export)."""
    statement = (
        select(audit_log).where(*query.where()).order_by(_c.seq)
        .execution_options(yield_per=1_000)
    )
    async with engine.connect() as conn:
        result = await conn.stream(statement)
        async for row in result:
            yield row
