"""The specialist lifecycle: propose, approve or reject, enable or disable, try; all audited.

Every change runs in one transaction that first takes the specialists lock (the generation
counter), re-reads the live set, validates, writes the change and its audit entry, and
commits; then this worker swaps its snapshot at once, and the others within one poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import uuid4

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.config.classification import Classification
from backend.governance import store
from backend.governance.audit import Actor, AuditEvent, append
from backend.governance.errors import (
    GovernedSpecialistNotFound,
    SelfApproval,
    VersionConflict,
    VersionNotFound,
    guarded,
)
from backend.governance.store import VersionRow
from backend.governance.versions import (
    CONTENT_FIELDS,
    content_of,
    diff,
    validate,
    within_ceilings,
)
from backend.specialists.manager import SpecialistManager
from backend.specialists.types import Specialist

Approval = Literal["required", "none"]


@dataclass(frozen=True, slots=True)
class Policy:
    """SPECIALIST_APPROVAL and PROVIDER_CLASSIFICATION, as the service applies them."""

    approval: Approval
    ceilings: Mapping[str, Classification]


@dataclass(frozen=True, slots=True)
class Change:
    """Who asks for a change, and the request it came with (for the audit entry)."""

    actor: Actor
    request_id: str | None = None


def _target(specialist_id: str) -> str:
    return f"specialist/{specialist_id}"


def version_view(row: VersionRow, previous: VersionRow | None = None) -> dict[str, Any]:
    """A version as the admin API shows it (with the diff to `previous` when given)."""
    return {
        "version": row.version, "state": row.state, "author": row.author, "reason": row.reason,
        "created_at": row.created_at, "approver": row.decided_by, "decided_at": row.decided_at,
        "comment": row.decision_comment, "live_at": row.live_at, "prompt_hash": row.prompt_hash,
        "content": row.content,
        "diff": diff(previous.content if previous else None, row.content),
    }


class Governance:
    """The governed specialists of one database, served through one `SpecialistManager`."""

    def __init__(self, engine: AsyncEngine, manager: SpecialistManager, policy: Policy) -> None:
        self.engine = engine
        self.manager = manager
        self.policy = policy
        self._generation: int | None = None
        # One reload at a time: a slow poll must not install an older set over a newer one.
        self._reloading = asyncio.Lock()

    @property
    def loaded_generation(self) -> int | None:
        """The generation this worker serves (None: not loaded from the database yet)."""
        return self._generation

    async def reload(self, *, force: bool = False) -> bool:
        """Swap in the database's live set if it changed since the last load; True if it did."""
        async with self._reloading, self.engine.connect() as conn:
            current = await store.generation(conn)
            if current == self._generation and not force:
                return False
            live = await store.live_specialists(conn)
            self.manager.replace(within_ceilings(live, self.policy.ceilings))
            self._generation = current
        return True

    @guarded
    async def overview(self) -> list[dict[str, Any]]:
        """Every specialist with its live version and its pending proposals."""
        async with self.engine.connect() as conn:
            rows = await store.all_specialists(conn)
            by_id: dict[str, list[VersionRow]] = {}
            for version in await store.versions(conn):
                by_id.setdefault(version.specialist_id, []).append(version)
        result = []
        for row in rows:
            versions = by_id.get(row.id, [])
            live = next((v for v in versions if v.state == "live"), None)
            result.append({
                "id": row.id, "enabled": row.enabled, "created_at": row.created_at,
                "live": version_view(live) if live else None,
                "pending": [version_view(v) for v in versions if v.state == "proposed"],
            })
        return result

    @guarded
    async def history(self, specialist_id: str) -> list[dict[str, Any]]:
        """Every version, oldest first, each with its diff to the one before."""
        async with self.engine.connect() as conn:
            if await store.specialist(conn, specialist_id) is None:
                raise GovernedSpecialistNotFound(f"no specialist with id {specialist_id!r}")
            versions = await store.versions(conn, specialist_id)
        return [
            version_view(v, versions[i - 1] if i else None) for i, v in enumerate(versions)
        ]

    @guarded
    async def create(
        self, content: Mapping[str, Any], *, reason: str, change: Change,
        specialist_id: str | None = None,
    ) -> dict[str, Any]:
        """A new specialist whose version 1 is proposed (live at once without four eyes)."""
        new_id = specialist_id or str(uuid4())
        async with self.engine.begin() as conn:
            current = await self._locked(conn)
            if await store.specialist(conn, new_id) is not None:
                raise VersionConflict(f"a specialist with id {new_id} exists already")
            candidate = validate(new_id, 1, content, current=current, ceilings=self.policy.ceilings)
            now = datetime.now(UTC)
            await store.add_specialist(conn, new_id, enabled=True, now=now)
            await self._propose(conn, candidate, 1, reason=reason, change=change, now=now,
                                action="specialist.create")
        await self.reload(force=True)
        return {"id": new_id, **await self._version(new_id, 1)}

    @guarded
    async def propose(
        self, specialist_id: str, changes: Mapping[str, Any], *, reason: str, change: Change,
        from_version: int | None = None,
    ) -> dict[str, Any]:
        """A new version: the live one (or `from_version`, a rollback) with `changes` applied."""
        async with self.engine.begin() as conn:
            current = await self._locked(conn)
            row = await self._specialist(conn, specialist_id)
            base_number = from_version or row.live_version
            base: dict[str, Any] = {}
            if base_number is not None:
                base = (await self._version_row(conn, specialist_id, base_number)).content
            content = {**base, **changes}
            number = await store.next_number(conn, specialist_id)
            candidate = validate(
                specialist_id, number, content, current=current,
                ceilings=self.policy.ceilings, enabled=row.enabled,
            )
            await self._propose(conn, candidate, number, reason=reason, change=change,
                                now=datetime.now(UTC), action="specialist.propose",
                                rollback_of=from_version, live=row.live_version)
        await self.reload(force=True)
        return {"id": specialist_id, **await self._version(specialist_id, number)}

    @guarded
    async def decide(
        self, specialist_id: str, number: int, *, approve: bool, comment: str, change: Change,
    ) -> dict[str, Any]:
        """Approve (it goes live, the old one is superseded) or reject a proposed version."""
        async with self.engine.begin() as conn:
            current = await self._locked(conn)
            row = await self._specialist(conn, specialist_id)
            version = await self._version_row(conn, specialist_id, number)
            if version.state != "proposed":
                raise VersionConflict(f"version {number} is {version.state}, not proposed")
            if approve:
                if self.policy.approval == "required" and version.author == change.actor.id:
                    raise SelfApproval(
                        "SPECIALIST_APPROVAL=required: another admin must approve this version"
                    )
                # Re-checked against the set as it is now: it may have changed since.
                validate(specialist_id, number, version.content, current=current,
                         ceilings=self.policy.ceilings, enabled=row.enabled)
            await self._decide(conn, version, row.live_version, approve=approve,
                               comment=comment, change=change)
        await self.reload(force=True)
        return {"id": specialist_id, **await self._version(specialist_id, number)}

    @guarded
    async def set_enabled(
        self, specialist_id: str, enabled: bool, *, change: Change
    ) -> dict[str, Any]:
        """Enable or disable a specialist; served again (or no more) on every worker."""
        async with self.engine.begin() as conn:
            await self._locked(conn)
            row = await self._specialist(conn, specialist_id)
            if row.enabled != enabled:
                await store.set_enabled(conn, specialist_id, enabled)
                await append(conn, AuditEvent(
                    change.actor, "specialist.enable" if enabled else "specialist.disable",
                    _target(specialist_id), {"enabled": row.enabled}, {"enabled": enabled},
                    change.request_id,
                ))
        await self.reload(force=True)
        return {"id": specialist_id, "enabled": enabled, "live_version": row.live_version}

    @guarded
    async def candidate(
        self, specialist_id: str, number: int
    ) -> tuple[Specialist, SpecialistManager]:
        """A stored version as it would serve, and the set it would serve in (for a trial)."""
        async with self.engine.connect() as conn:
            row = await self._specialist(conn, specialist_id)
            version = await self._version_row(conn, specialist_id, number)
        current = self.manager
        specialist = validate(specialist_id, number, version.content, current=current,
                              ceilings=self.policy.ceilings, enabled=row.enabled)
        return specialist, current.with_candidate(specialist)

    @guarded
    async def record_trial(
        self, specialist_id: str, number: int, *, change: Change, ok: bool, error: str | None
    ) -> None:
        """The audit entry of a trial (its usage row is flagged `trial`)."""
        async with self.engine.begin() as conn:
            await append(conn, AuditEvent(
                change.actor, "specialist.try", _target(specialist_id), None,
                {"version": number, "ok": ok, "error": error}, change.request_id,
            ))

    async def _locked(self, conn: AsyncConnection) -> SpecialistManager:
        await store.lock(conn)
        return SpecialistManager(await store.live_specialists(conn))

    async def _specialist(self, conn: AsyncConnection, specialist_id: str) -> store.SpecialistRow:
        row = await store.specialist(conn, specialist_id)
        if row is None:
            raise GovernedSpecialistNotFound(f"no specialist with id {specialist_id!r}")
        return row

    async def _version_row(
        self, conn: AsyncConnection, specialist_id: str, number: int
    ) -> VersionRow:
        version = await store.version(conn, specialist_id, number)
        if version is None:
            raise VersionNotFound(f"specialist {specialist_id} has no version {number}")
        return version

    async def _version(self, specialist_id: str, number: int) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            return version_view(await self._version_row(conn, specialist_id, number))

    async def _propose(
        self, conn: AsyncConnection, candidate: Specialist, number: int, *, reason: str,
        change: Change, now: datetime, action: str, rollback_of: int | None = None,
        live: int | None = None,
    ) -> None:
        specialist_id = str(candidate.id)
        content = content_of(candidate)
        await store.add_version(conn, specialist_id, number, content, author=change.actor.id,
                                reason=reason, now=now, prompt_hash=candidate.prompt_hash)
        after = {"version": number, "state": "proposed", "reason": reason, "content": content}
        if rollback_of is not None:
            after["rollback_of"] = rollback_of
        before = None if action == "specialist.create" else {"live_version": live}
        await append(conn, AuditEvent(change.actor, action, _target(specialist_id), before,
                                      after, change.request_id))
        if self.policy.approval == "none":  # still versioned and audited, live at once
            row = await self._specialist(conn, specialist_id)
            version = await self._version_row(conn, specialist_id, number)
            await self._decide(conn, version, row.live_version, approve=True,
                               comment="SPECIALIST_APPROVAL=none", change=change)

    async def _decide(
        self, conn: AsyncConnection, version: VersionRow, live: int | None, *, approve: bool,
        comment: str, change: Change,
    ) -> None:
        state = "live" if approve else "rejected"
        await store.decide(conn, version.specialist_id, version.version, state=state,
                           by=change.actor.id, comment=comment, now=datetime.now(UTC))
        await append(conn, AuditEvent(
            change.actor, "specialist.approve" if approve else "specialist.reject",
            _target(version.specialist_id), {"live_version": live},
            {"version": version.version, "state": state, "comment": comment,
             "live_version": version.version if approve else live},
            change.request_id,
        ))


__all__ = ["CONTENT_FIELDS", "Change", "Governance", "Policy", "version_view"]
