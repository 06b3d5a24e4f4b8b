"""The audit chain is tamper-evident: an edited, deleted or re-hashed entry is reported by
`python -m backend.audit verify` at the first broken link (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.governance.audit import Actor, AuditEvent, append, entry_hash, verify
from backend.governance.tables import audit_log
from backend.tests.ratelimit.servers import ROOT

ADMIN = Actor("a" * 64, "jwt")


async def _fill(engine: AsyncEngine, count: int) -> None:
    for index in range(count):
        async with engine.begin() as conn:
            await append(conn, AuditEvent(
                ADMIN, "specialist.propose", f"specialist/{index}", {"version": index},
                {"version": index + 1, "prompt": "naïve \"quoted\" text"}, f"req-{index}",
            ))


async def _cli(database_url: str) -> tuple[int, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "ENVIRONMENT": "test",
           "AUTH_MODE": "none", "USER_HASH_SECRET": "test-secret"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend.audit", "verify", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_an_intact_chain_verifies_and_an_edited_entry_is_reported(
    engine: AsyncEngine, database_url: str
) -> None:
    await _fill(engine, 5)
    code, out = await _cli(database_url)
    assert code == 0 and "intact: 5 entries" in out, out
    async with engine.begin() as conn:
        await conn.execute(update(audit_log).where(audit_log.c.seq == 3)
                           .values(actor="b" * 64))
    code, out = await _cli(database_url)
    assert code == 1 and "BROKEN at entry 3" in out and "content" in out, out


async def test_a_deleted_entry_is_reported(engine: AsyncEngine) -> None:
    await _fill(engine, 4)
    async with engine.begin() as conn:
        await conn.execute(delete(audit_log).where(audit_log.c.seq == 2))
    result = await verify(engine)
    assert result.broken is not None and result.broken.seq == 2
    assert "missing" in result.broken.reason and result.checked == 1


async def test_the_last_entry_deleted_is_reported_too(engine: AsyncEngine) -> None:
    await _fill(engine, 3)
    async with engine.begin() as conn:
        await conn.execute(delete(audit_log).where(audit_log.c.seq == 3))
    result = await verify(engine)
    assert result.broken is not None and result.broken.seq == 3


async def test_a_rehashed_edit_breaks_the_next_link(engine: AsyncEngine) -> None:
    # An editor who recomputes the edited entry's own hash still breaks its successor's link.
    await _fill(engine, 4)
    async with engine.begin() as conn:
        row = dict((await conn.execute(
            audit_log.select().where(audit_log.c.seq == 2))).one()._mapping)
        row["after"] = '{"version": 99}'
        forged = entry_hash(row)
        await conn.execute(update(audit_log).where(audit_log.c.seq == 2)
                           .values(after=row["after"], hash=forged))
    result = await verify(engine)
    assert result.broken is not None and result.broken.seq == 3
    assert "link" in result.broken.reason


async def test_concurrent_appends_each_link_to_the_one_before(engine: AsyncEngine) -> None:
    async def one(index: int) -> Any:
        async with engine.begin() as conn:
            return await append(conn, AuditEvent(ADMIN, "x", f"t/{index}"))

    seqs = await asyncio.gather(*(one(i) for i in range(8)))
    assert sorted(seqs) == list(range(1, 9))
    result = await verify(engine)
    assert result.broken is None and result.checked == 8
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM audit_log"))).scalar_one()
    assert count == 8
