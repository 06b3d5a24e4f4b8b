"""The schema at start-up: is the database at the migrations' head, and if not, say so.

Migrations live in `alembic/` at the repository root and are applied with
`alembic upgrade head`. For a SQLite file (the embedded default) the app applies them
itself, so the README's run command works on a fresh clone; for PostgreSQL it refuses to
start on an old schema unless AUTO_MIGRATE=true, because several replicas racing to
migrate a shared database is an operator's decision, not a side effect of a deploy.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.database.engine import is_sqlite

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
UPGRADE_COMMAND = "alembic upgrade head"
# Any constant works: it names "the migration" among PostgreSQL's advisory locks.
_PG_MIGRATION_LOCK = 0x706F7274616C  # "portal"


class SchemaError(RuntimeError):
    """The database schema is not what this code needs; the message says what to run."""


@dataclass(frozen=True, slots=True)
class SchemaState:
    """The revisions the database is at, and the ones the code's migrations end at."""

    current: frozenset[str]
    heads: frozenset[str]

    @property
    def is_current(self) -> bool:
        """True when the database is exactly at the migrations' head."""
        return self.current == self.heads


def alembic_config(root: Path = ROOT) -> Config:
    """The Alembic configuration of this checkout (`alembic.ini` at the repository root)."""
    ini = root / "alembic.ini"
    if not ini.is_file():
        raise SchemaError(
            f"migrations not found: {ini} is missing; run the app from a checkout of the repository"
        )
    config = Config(str(ini))
    config.set_main_option("script_location", str(root / "alembic"))
    return config


def _heads(config: Config) -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def _current(connection: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(connection).get_current_heads())


async def schema_state(engine: AsyncEngine, config: Config | None = None) -> SchemaState:
    """Where the database is, against where the migrations end."""
    config = config or alembic_config()
    async with engine.connect() as conn:
        current = await conn.run_sync(_current)
    return SchemaState(current=current, heads=_heads(config))


async def upgrade(engine: AsyncEngine, config: Config | None = None) -> None:
    """`alembic upgrade head`, on the app's own engine, one migrator at a time.

    `uvicorn --workers N` starts N processes that all find a fresh database empty. Without
    a lock the second one's CREATE TABLE fails while the first is half way, and uvicorn
    then stops every worker. So the upgrade holds a lock (an advisory lock on PostgreSQL,
    a lock file beside a SQLite file) and looks again once it has it: whoever waited
    finds the work done.
    """
    config = config or alembic_config()
    heads = _heads(config)

    def run(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        if _current(connection) == heads:
            return
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with _sqlite_file_lock(engine):
        async with engine.begin() as conn:
            await conn.run_sync(run)


@asynccontextmanager
async def _sqlite_file_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold `<file>.migrate-lock` (flock) while migrating a SQLite file; no-op otherwise.

    A separate file, not the database: closing any descriptor of the database file would
    drop SQLite's own POSIX locks on it in this process. The lock is polled, not waited for
    in a thread, so the start-up deadline can cancel the wait.
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    fd = os.open(f"{database}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


async def ensure_schema(engine: AsyncEngine, *, auto_migrate: bool) -> None:
    """Migrate (when allowed) or fail with the command to run, unless the schema is current."""
    config = alembic_config()
    state = await schema_state(engine, config)
    if state.is_current:
        return
    unknown = state.current - set(_all_revisions(config))
    if unknown:
        raise SchemaError(
            f"the database is at revision {', '.join(sorted(unknown))}, which this code does not "
            "know (a newer release migrated it); deploy that release or a later one"
        )
    if not auto_migrate:
        raise SchemaError(
            f"the database schema is at {_describe(state.current)}, this code needs "
            f"{_describe(state.heads)}: run `{UPGRADE_COMMAND}` from the repository root "
            "(with the same DATABASE_URL), or set AUTO_MIGRATE=true"
        )
    log.info("migrating the database: %s -> %s", _describe(state.current), _describe(state.heads))
    try:
        await upgrade(engine, config)
    except SQLAlchemyError:
        # Several workers starting at once race to migrate; the losers find it done.
        if not (await schema_state(engine, config)).is_current:
            raise
        log.info("another process migrated the database first")


async def prepare_schema(
    engine: AsyncEngine, *, url: str, auto_migrate: bool | None, deadline_seconds: float
) -> None:
    """The start-up check: a current schema, or a SchemaError naming the command to run.

    `auto_migrate=None` means: migrate a SQLite file, never PostgreSQL. A PostgreSQL that
    cannot be reached within the deadline does not stop the app: chat keeps working and
    usage records go to the spool until it is back (the outage design), and the writer
    keeps them there if the schema then turns out to be wrong. An unusable SQLite file is a
    configuration error and does stop it.
    """
    migrate = is_sqlite(url) if auto_migrate is None else auto_migrate
    try:
        async with asyncio.timeout(deadline_seconds):
            await ensure_schema(engine, auto_migrate=migrate)
    except SchemaError:
        raise
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        if is_sqlite(url):
            raise SchemaError(f"cannot open the SQLite database {url}: {exc}") from exc
        log.error(
            "database unreachable at start-up (%s); serving anyway, usage records will "
            "spool until it is back. Its schema is not checked: run `%s` if needed",
            type(exc).__name__, UPGRADE_COMMAND,
        )


def _all_revisions(config: Config) -> list[str]:
    return [script.revision for script in ScriptDirectory.from_config(config).walk_revisions()]


def _describe(revisions: frozenset[str]) -> str:
    return ", ".join(sorted(revisions)) if revisions else "no revision (empty)"
