"""The SQLite file is private to its owner, like the spool."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from backend.database.engine import make_engine


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


@pytest.mark.parametrize("umask", [0o022, 0o000])
async def test_a_new_sqlite_database_is_created_0600(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "portal.db"
    previous = os.umask(umask)
    try:
        engine = make_engine(f"sqlite:///{path}")
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            modes = _modes(tmp_path)  # while connected: the -wal and -shm files exist
        await engine.dispose()
    finally:
        os.umask(previous)
    assert "portal.db-wal" in modes  # WAL is on: its files must be private too
    assert all(mode == 0o600 for mode in modes.values()), {k: oct(v) for k, v in modes.items()}


async def test_an_existing_database_keeps_its_mode_and_its_data(tmp_path: Path) -> None:
    path = tmp_path / "portal.db"
    engine = make_engine(f"sqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    await engine.dispose()
    path.chmod(0o640)
    engine = make_engine(f"sqlite:///{path}")
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
    await engine.dispose()
    assert _modes(tmp_path)["portal.db"] == 0o640
