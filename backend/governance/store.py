"""Reading and writing specialists and their versions; every write inside a locked transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.governance.tables import governance_state, specialist_versions, specialists
from backend.governance.versions import build, canonical, content_hash
from backend.specialists.types import Specialist

_s, _v, _g = specialists.c, specialist_versions.c, governance_state.c


def _utc(stamp: datetime | None) -> datetime | None:
    if stamp is None:
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One stored version, as read back."""

    specialist_id: str
    version: int
    content: dict[str, Any]
    prompt_hash: str
    content_hash: str
    author: str
    reason: str
    created_at: datetime
    state: str
    decided_by: str | None
    decided_at: datetime | None
    decision_comment: str | None
    live_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> VersionRow:
        """From a `specialist_versions` row."""
        m = row._mapping
        return cls(
            specialist_id=m["specialist_id"], version=m["version"],
            content=orjson.loads(m["content"]), prompt_hash=m["prompt_hash"],
            content_hash=m["content_hash"], author=m["author"], reason=m["reason"],
            created_at=_utc(m["created_at"]) or datetime.now(UTC), state=m["state"],
            decided_by=m["decided_by"], decided_at=_utc(m["decided_at"]),
            decision_comment=m["decision_comment"], live_at=_utc(m["live_at"]),
        )


@dataclass(frozen=True, slots=True)
class SpecialistRow:
    """One specialist: whether it is enabled and which version serves."""

    id: str
    enabled: bool
    live_version: int | None
    created_at: datetime


async def lock(conn: AsyncConnection) -> int:
    """Start a specialists change: bump the generation (and hold its lock until commit)."""
    value = (await conn.execute(
        update(governance_state).where(_g.name == "specialists")
        .values(value=_g.value + 1).returning(_g.value)
    )).scalar_one()
    return int(value)


async def generation(conn: AsyncConnection) -> int:
    """The generation now: workers poll this to learn that a reload is due."""
    return int((await conn.execute(
        select(_g.value).where(_g.name == "specialists")
    )).scalar_one())


async def count(conn: AsyncConnection) -> int:
    """How many specialists the database has (zero: seed it)."""
    return int((await conn.execute(select(func.count()).select_from(specialists))).scalar_one())


async def live_specialists(conn: AsyncConnection) -> list[Specialist]:
    """Every specialist with a live version, as it serves (disabled ones too: fallbacks)."""
    rows = (await conn.execute(
        select(_s.id, _s.enabled, _v.version, _v.content)
        .join(specialist_versions, and_(
            _v.specialist_id == _s.id, _v.version == _s.live_version
        ))
        .order_by(_s.created_at, _s.id)
    )).all()
    return [
        build(row.id, row.version, orjson.loads(row.content), enabled=row.enabled)
        for row in rows
    ]


async def specialist(conn: AsyncConnection, specialist_id: str) -> SpecialistRow | None:
    """The specialist row, or None."""
    row = (await conn.execute(select(specialists).where(_s.id == specialist_id))).first()
    if row is None:
        return None
    return SpecialistRow(row.id, bool(row.enabled), row.live_version,
                         _utc(row.created_at) or datetime.now(UTC))


async def all_specialists(conn: AsyncConnection) -> list[SpecialistRow]:
    """Every specialist row, oldest first."""
    rows = (await conn.execute(select(specialists).order_by(_s.created_at, _s.id))).all()
    return [SpecialistRow(r.id, bool(r.enabled), r.live_version, _utc(r.created_at) or
                          datetime.now(UTC)) for r in rows]


async def versions(conn: AsyncConnection, specialist_id: str | None = None) -> list[VersionRow]:
    """The versions of one specialist (or all), oldest first."""
    statement = select(specialist_versions).order_by(_v.specialist_id, _v.version)
    if specialist_id is not None:
        statement = statement.where(_v.specialist_id == specialist_id)
    return [VersionRow.of(row) for row in (await conn.execute(statement)).all()]


async def version(conn: AsyncConnection, specialist_id: str, number: int) -> VersionRow | None:
    """One version, or None."""
    row = (await conn.execute(
        select(specialist_versions).where(_v.specialist_id == specialist_id, _v.version == number)
    )).first()
    return None if row is None else VersionRow.of(row)


async def add_specialist(
    conn: AsyncConnection, specialist_id: str, *, enabled: bool, now: datetime
) -> None:
    """A new specialist row, with no live version yet."""
    await conn.execute(specialists.insert().values(
        id=specialist_id, enabled=enabled, live_version=None, created_at=now
    ))


async def add_version(
    conn: AsyncConnection, specialist_id: str, number: int, content: dict[str, Any], *,
    author: str, reason: str, now: datetime, prompt_hash: str,
) -> None:
    """Store a new version as `proposed` (only its state ever changes afterwards)."""
    await conn.execute(specialist_versions.insert().values(
        specialist_id=specialist_id, version=number, content=canonical(content),
        prompt_hash=prompt_hash, content_hash=content_hash(content), author=author,
        reason=reason, created_at=now, state="proposed",
    ))


async def next_number(conn: AsyncConnection, specialist_id: str) -> int:
    """The number the next version of this specialist gets."""
    top = (await conn.execute(
        select(func.max(_v.version)).where(_v.specialist_id == specialist_id)
    )).scalar()
    return 1 if top is None else int(top) + 1


async def decide(
    conn: AsyncConnection, specialist_id: str, number: int, *, state: str, by: str,
    comment: str | None, now: datetime,
) -> None:
    """Mark a proposed version live or rejected; going live supersedes the live one."""
    if state == "live":
        await conn.execute(
            update(specialist_versions)
            .where(_v.specialist_id == specialist_id, _v.state == "live")
            .values(state="superseded")
        )
        await conn.execute(
            update(specialists).where(_s.id == specialist_id).values(live_version=number)
        )
    await conn.execute(
        update(specialist_versions)
        .where(_v.specialist_id == specialist_id, _v.version == number)
        .values(state=state, decided_by=by, decided_at=now, decision_comment=comment,
                live_at=now if state == "live" else None)
    )


async def set_enabled(conn: AsyncConnection, specialist_id: str, enabled: bool) -> None:
    """Enable or disable a specialist (its versions stay as they are)."""
    await conn.execute(update(specialists).where(_s.id == specialist_id).values(enabled=enabled))
