"""Migrations: up from empty, idempotent, equal to the table definition, and the start-up check."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.database import migrations
from backend.database.engine import make_engine
from backend.database.migrations import ROOT, SchemaError, schema_state, upgrade
from backend.main import build_services, close_services
from backend.tests.support import make_settings, postgres_database
from backend.tests.usage.helpers import count_rows, eventually, make_record
from backend.usage.store import insert_batch
from backend.usage.table import metadata

REPORT_INDEXES = {
    "ix_usage_log_timestamp": ["timestamp"],
    "ix_usage_log_user_time": ["user_email_hash", "timestamp"],
    "ix_usage_log_specialist_time": ["specialist_id", "timestamp"],
    "ix_usage_log_model_time": ["model", "timestamp"],
}


def _schema(connection: Connection) -> tuple[dict[str, list[str]], list[list[str]], list[str]]:
    inspector = inspect(connection)
    indexes = {
        str(ix["name"]): list(ix["column_names"]) for ix in inspector.get_indexes("usage_log")
    }
    uniques = [list(u["column_names"]) for u in inspector.get_unique_constraints("usage_log")]
    columns = [c["name"] for c in inspector.get_columns("usage_log")]
    return indexes, uniques, columns


async def test_upgrade_from_empty_builds_the_table_and_twice_changes_nothing(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        before = await schema_state(engine)
        # One head, whatever the last revision is (parallel branches are re-chained at merge).
        assert before.current == frozenset() and len(before.heads) == 1

        await upgrade(engine)
        assert (await schema_state(engine)).is_current
        async with engine.connect() as conn:
            indexes, uniques, columns = await conn.run_sync(_schema)
        assert REPORT_INDEXES.items() <= indexes.items()
        assert ["request_id"] in uniques
        assert columns[:12] == [  # the seed's columns, as named
            "id", "timestamp", "user_email_hash", "specialist_id", "specialist_name", "provider",
            "model", "input_tokens", "output_tokens", "estimated_cost_usd", "latency_ms", "success",
        ]

        await insert_batch(engine, [make_record()])
        await upgrade(engine)  # idempotent: no error, data kept
        assert (await schema_state(engine)).is_current
        assert await count_rows(engine) == 1
    finally:
        await engine.dispose()


async def test_the_migrated_schema_is_what_the_table_module_declares(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), metadata
                )
            )
        assert diff == []
    finally:
        await engine.dispose()


async def test_alembic_upgrade_head_from_the_repository_root(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "ENVIRONMENT": "development"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alembic", "upgrade", "head",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    assert b"Running upgrade  -> 0001" in stderr
    assert b"Running upgrade 0001 -> 0002" in stderr
    engine = make_engine(database_url)
    try:
        assert (await schema_state(engine)).is_current
    finally:
        await engine.dispose()


async def test_start_up_refuses_a_stale_schema_naming_the_command(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database_url=database_url, auto_migrate=False)
    with pytest.raises(SchemaError, match=r"run `alembic upgrade head` from the repository root"):
        await build_services(settings)


async def test_start_up_migrates_a_fresh_sqlite_file_by_default(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auto_migrate=None)
    services = await build_services(settings)
    try:
        assert (await schema_state(services.engine)).is_current
    finally:
        await close_services(services)


async def test_start_up_does_not_migrate_postgresql_by_default(tmp_path: Path) -> None:
    async with postgres_database() as url:
        settings = make_settings(tmp_path, database_url=url, auto_migrate=None)
        with pytest.raises(SchemaError, match="AUTO_MIGRATE=true"):
            await build_services(settings)


async def test_an_unreachable_postgresql_at_start_up_does_not_stop_the_app(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, database_url="postgresql://127.0.0.1:9/nowhere", auto_migrate=None,
        database_connect_timeout_seconds=0.5,
    )
    services = await build_services(settings)  # logs the outage, serves anyway
    try:
        services.recorder.record(make_record())
        await services.recorder.flush()
        assert services.recorder.status().spool_records == 1
    finally:
        await close_services(services)


async def test_a_worker_that_loses_the_migration_race_still_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `uvicorn --workers 4` on a fresh clone: all see an empty database, one migrates, the
    # others' CREATE TABLE fails. Here: the upgrade fails after someone else completed it.
    engine = make_engine(f"sqlite:///{tmp_path / 'shared.db'}")

    async def lost_the_race(engine_: AsyncEngine, config: Any = None) -> None:
        await real_upgrade(engine_)  # the winner
        raise OperationalError("CREATE TABLE usage_log", {}, Exception("table already exists"))

    real_upgrade = migrations.upgrade
    monkeypatch.setattr(migrations, "upgrade", lost_the_race)
    try:
        await migrations.ensure_schema(engine, auto_migrate=True)  # no error
        assert (await schema_state(engine)).is_current
    finally:
        await engine.dispose()


_MIGRATE_WHEN_TOLD = """
import asyncio, sys, time
from pathlib import Path
from backend.database.engine import make_engine
from backend.database.migrations import ensure_schema

async def main(url: str, ready: Path, go: Path) -> None:
    engine = make_engine(url)
    ready.touch()
    while not go.exists():  # every process starts migrating at the same moment
        time.sleep(0.001)
    try:
        await ensure_schema(engine, auto_migrate=True)
    finally:
        await engine.dispose()

asyncio.run(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
"""


async def test_workers_migrating_one_fresh_database_at_once_all_start(
    database_url: str, tmp_path: Path
) -> None:
    # `uvicorn --workers 4` on a fresh clone: four processes find the same empty database.
    go = tmp_path / "go"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _MIGRATE_WHEN_TOLD, database_url,
            str(tmp_path / f"ready{i}"), str(go),
            cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        )
        for i in range(4)
    ]
    async def all_ready() -> bool:
        return all((tmp_path / f"ready{i}").exists() for i in range(len(processes)))

    async with asyncio.timeout(60):
        await eventually(all_ready, within=50, every=0.01)
        go.touch()
        errors = [(await p.communicate())[1].decode() for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, errors
    engine = make_engine(database_url)
    try:
        assert (await schema_state(engine)).is_current
    finally:
        await engine.dispose()


async def test_0002_adds_finish_reason_and_billed_keeping_old_rows(database_url: str) -> None:
    """A database at 0001 with a row in it: 0002 keeps the row, NULL reason and billed true."""
    from alembic import command
    from sqlalchemy import text

    engine = make_engine(database_url)
    try:
        config = migrations.alembic_config()

        def to(revision: str) -> Any:
            def run(connection: Connection) -> None:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
            return run

        async with engine.begin() as conn:
            await conn.run_sync(to("0001"))
            await conn.execute(text(
                "INSERT INTO usage_log (timestamp, specialist_id, specialist_name, provider, "
                "model, input_tokens, output_tokens, latency_ms, success, request_id, streamed, "
                "tokens_estimated) VALUES (CURRENT_TIMESTAMP, 's', 'S', 'openai', 'm', 1, 2, "
                "3.0, true, 'old-row', false, false)"
            ))
        async with engine.begin() as conn:
            await conn.run_sync(to("0002"))
        async with engine.connect() as conn:
            row = (await conn.execute(
                text("SELECT finish_reason, billed FROM usage_log WHERE request_id = 'old-row'")
            )).one()
        assert row.finish_reason is None and bool(row.billed) is True
        async with engine.begin() as conn:  # the writer writes today's table: the head's
            await conn.run_sync(to("head"))
        await insert_batch(engine, [make_record(finish_reason="length", billed=False)])
        async with engine.connect() as conn:
            rows = (await conn.execute(
                text("SELECT finish_reason, billed FROM usage_log WHERE request_id <> 'old-row'")
            )).all()
        assert [(r.finish_reason, bool(r.billed)) for r in rows] == [("length", False)]
    finally:
        await engine.dispose()
