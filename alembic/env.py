"""Alembic environment: DATABASE_URL from the app's settings, async drivers, both dialects.

Two ways in: the `alembic` command (builds its own engine from settings), and the app at
start-up (hands its connection over in `config.attributes["connection"]`).
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection

from backend.config.settings import get_settings
from backend.database.engine import async_url, make_engine
import backend.auth.table  # noqa: F401  (declares api_keys on the same metadata)
import backend.budgets.table  # noqa: F401  (and the budget tables)
import backend.auth.session_table  # noqa: F401  (and the browser sign-in tables)
from backend.usage.table import metadata

config = context.config
target_metadata = metadata


def _database_url() -> str:
    # Tests and tools may pass a URL; otherwise the same settings the app reads.
    url = config.attributes.get("database_url")
    return str(url) if url else get_settings().database_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite can't ALTER most things: later migrations rebuild tables in batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on an open connection."""
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    """Connect with the async driver the app uses, and migrate."""
    engine = make_engine(_database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL for DATABASE_URL's dialect."""
    context.configure(
        url=async_url(_database_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Use the caller's connection when there is one, else connect from settings."""
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    asyncio.run(run_async_migrations())


if config.attributes.get("connection") is None and config.config_file_name is not None:
    # Only for the command line: the app has configured its own logging already.
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
