"""The specialists file into the database: an empty database is seeded at start-up, and
`python -m backend.specialists import FILE` is idempotent (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

from backend.database.engine import make_engine
from backend.governance.audit import verify
from backend.governance.tables import audit_log, specialist_versions
from backend.tests.chat.conftest import SPECIALISTS
from backend.tests.governance.conftest import ALICE, governed_portal
from backend.tests.ratelimit.servers import ROOT


async def _import(database_url: str, path: Path, **env: str) -> tuple[int, str]:
    values = {**os.environ, "DATABASE_URL": database_url, "ENVIRONMENT": "test",
              "AUTH_MODE": "none", "USER_HASH_SECRET": "test-secret", "AUTO_MIGRATE": "true",
              **env}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend.specialists", "import", str(path), cwd=ROOT, env=values,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def _counts(database_url: str) -> tuple[int, int]:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(
                select(func.count()).select_from(specialist_versions))).scalar_one()
            entries = (await conn.execute(select(func.count()).select_from(audit_log))).scalar_one()
        return int(versions), int(entries)
    finally:
        await engine.dispose()


def _entries(tmp_path: Path, prompt: str = "one") -> Path:
    path = tmp_path / "import.yaml"
    path.write_text(yaml.safe_dump({"specialists": [
        {"id": "abababab-abab-4aba-8aba-abababababab", "name": "A", "provider": "openai",
         "model": "gpt-4o", "system_prompt": prompt, "version": 3},
        {"id": "cdcdcdcd-cdcd-4cdc-8cdc-cdcdcdcdcdcd", "name": "B", "provider": "demo",
         "model": "demo-echo", "enabled": False},
    ]}))
    return path


async def test_import_is_idempotent_and_a_change_becomes_a_proposal(
    database_url: str, tmp_path: Path
) -> None:
    path = _entries(tmp_path)
    code, out = await _import(database_url, path)
    assert code == 0 and "2 new specialists, 2 versions live" in out, out
    assert await _counts(database_url) == (2, 2)
    code, out = await _import(database_url, path)
    assert code == 0 and "2 unchanged" in out, out
    assert await _counts(database_url) == (2, 2)  # no version, no audit entry
    changed = _entries(tmp_path, prompt="two")
    code, out = await _import(database_url, changed)  # four eyes: it waits for an admin
    assert "1 proposed" in out and "1 unchanged" in out, out
    code, out = await _import(database_url, changed)
    assert "2 unchanged" in out, out
    assert await _counts(database_url) == (3, 3)
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(
                specialist_versions.c.version, specialist_versions.c.state,
                specialist_versions.c.author,
            ).order_by(specialist_versions.c.specialist_id, specialist_versions.c.version))).all()
        assert [tuple(r) for r in rows] == [
            (3, "live", "import"), (4, "proposed", "import"), (1, "live", "import")]
        assert (await verify(engine)).broken is None
    finally:
        await engine.dispose()


async def test_a_bad_file_stores_nothing(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"specialists": [
        {"id": "abababab-abab-4aba-8aba-abababababab", "name": "A", "provider": "openai",
         "model": "gpt-4o", "classification": "restricted"}]}))
    code, out = await _import(database_url, path)
    assert code == 2 and "classification" in out, out
    assert await _counts(database_url) == (0, 0)


async def test_an_empty_database_is_seeded_at_start_up_and_only_then(
    portal_factory: Any, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    portal = await governed_portal(portal_factory, url)
    listed = (await portal.client.get("/admin/specialists", headers=ALICE)).json()
    assert {s["id"] for s in listed} >= set(SPECIALISTS.values())
    assert all(s["live"]["author"] == "import" for s in listed)
    audit = (await portal.client.get("/admin/audit", headers=ALICE,
                                     params={"action": "specialist.import"})).json()
    assert audit["total"] == len(listed)
    # A second start on the same database (another worker, a restart) seeds nothing more.
    again = await governed_portal(portal_factory, url)
    assert (await again.client.get("/admin/audit", headers=ALICE)).json()["total"] == len(listed)
