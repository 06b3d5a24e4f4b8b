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
from backend.tests.usage.helpers import count_rows, make_record
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
        assert before.current == frozenset() and before.heads == {"0006"}

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
