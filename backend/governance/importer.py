"""The specialists file into the database: the seed of an empty one, and re-imports.

Idempotent: an entry whose content equals its live version (or a pending proposal) adds
nothing. A new or changed entry becomes a proposal, live at once when seeding an empty
database or when SPECIALIST_APPROVAL=none; otherwise it waits for an admin's approval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from backend.governance import store
from backend.governance.audit import Actor, AuditEvent, append
from backend.governance.service import Governance
from backend.governance.versions import content_hash, content_of, validate
from backend.specialists.manager import SpecialistManager
from backend.specialists.types import Specialist

IMPORTER = Actor("import", "import")


@dataclass(slots=True)
class ImportResult:
    """What an import did, per specialist id."""

    created: list[str] = field(default_factory=list)
    proposed: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


async def import_specialists(
    governance: Governance, items: list[Specialist], *, source: str, only_if_empty: bool = False,
    actor: Actor = IMPORTER,
) -> ImportResult:
    """Import `items` (validated already, as a file is); `only_if_empty`: the start-up seed."""
    result = ImportResult()
    async with governance.engine.begin() as conn:
        await store.lock(conn)
        empty = await store.count(conn) == 0
        if only_if_empty and not empty:
            return result
        live = await store.live_specialists(conn)
        file_ids = {str(item.id) for item in items}
        # The set the entries are checked in: the file's, plus what the database has besides.
        current = SpecialistManager([*items, *(s for s in live if str(s.id) not in file_ids)])
        for item in items:
            await _import_one(conn, governance, item, current, result,
                              go_live=empty or governance.policy.approval == "none",
                              actor=actor, source=source)
    await governance.reload(force=True)
    return result


async def _import_one(
    conn: AsyncConnection, governance: Governance, item: Specialist, current: SpecialistManager,
    result: ImportResult, *, go_live: bool, actor: Actor, source: str,
) -> None:
    specialist_id = str(item.id)
    content = content_of(item)
    row = await store.specialist(conn, specialist_id)
    now = datetime.now(UTC)
    if row is None:
        number = item.version  # the file's number: older usage rows keep meaning the same
        await store.add_specialist(conn, specialist_id, enabled=item.enabled, now=now)
        result.created.append(specialist_id)
    else:
        digest = content_hash(content)
        known = [v for v in await store.versions(conn, specialist_id)
                 if v.state in ("live", "proposed")]
        if any(v.content_hash == digest for v in known):
            result.unchanged.append(specialist_id)
            return
        number = await store.next_number(conn, specialist_id)
    validate(specialist_id, number, content, current=current,
             ceilings=governance.policy.ceilings, enabled=item.enabled)
    await store.add_version(conn, specialist_id, number, content, author=actor.id,
                            reason=f"imported from {source}", now=now,
                            prompt_hash=item.prompt_hash)
    state = "live" if go_live else "proposed"
    if go_live:
        await store.decide(conn, specialist_id, number, state="live", by=actor.id,
                           comment="imported", now=now)
        result.live.append(specialist_id)
    else:
        result.proposed.append(specialist_id)
    await append(conn, AuditEvent(
        actor, "specialist.import", f"specialist/{specialist_id}",
        None if row is None else {"live_version": row.live_version},
        {"version": number, "state": state, "source": source, "content": content},
    ))
