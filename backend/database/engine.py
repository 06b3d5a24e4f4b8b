"""The async SQLAlchemy engine, from the seed's DATABASE_URL forms."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# The seed writes plain URLs; we pick the async driver so users never have to.
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def async_url(url: str) -> str:
    """`sqlite:///x.db` -> `sqlite+aiosqlite:///x.db`; `postgresql://` -> `+asyncpg`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("DATABASE_URL must look like sqlite:///./file.db or postgresql://...")
    base = scheme.split("+", 1)[0]
    if base not in _DRIVERS:
        raise ValueError(f"DATABASE_URL scheme {scheme!r} is not sqlite or postgresql")
    return f"{_DRIVERS[base]}://{rest}"


def is_sqlite(url: str) -> bool:
    """True for a `sqlite:` DATABASE_URL (any driver suffix)."""
    return url.partition("://")[0].split("+", 1)[0] == "sqlite"


def make_engine(url: str, *, connect_timeout: float = 5.0, **kwargs: Any) -> AsyncEngine:
    """An engine for DATABASE_URL with a bounded connect; SQLite gets WAL.

    `connect_timeout` bounds how long a dead PostgreSQL can hold a caller (the usage
    writer above all): asyncpg's `timeout` covers the TCP connect and the handshake.
    Pooled connections are pinged on checkout so a database restart costs no failed batch.
    """
    target = async_url(url)
    connect_args: dict[str, Any] = dict(kwargs.pop("connect_args", {}))
    # asyncpg: connect + handshake deadline; sqlite3: how long to wait for a locked file.
    connect_args.setdefault("timeout", connect_timeout)
    engine = create_async_engine(
        target, connect_args=connect_args, pool_pre_ping=True, **kwargs
    )
    if engine.dialect.name == "sqlite":
        _create_private(engine.url.database)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _create_private(database: str | None) -> None:
    # The file holds user hashes and spend: readable by its owner only, like the spool.
    # SQLite gives its -wal and -shm files the database file's mode, so they follow.
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    # An existing file keeps the mode its owner gave it; a missing folder is reported by
    # the first connection, naming the file.
    with contextlib.suppress(OSError):
        os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
