"""Writing records to `usage_log`: one transaction per batch, idempotent by request id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from sqlalchemy import String
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.usage.record import FIELD_NAMES, UsageRecord
from backend.usage.table import usage_log

# One statement per dialect, written once: SQLAlchemy's compiled INSERT with RETURNING
# processed every value of every row in Python, a third of a record's cost. Both spellings
# are idempotent by request id: a record written twice (a replay after a batch that
# committed but whose acknowledgement was lost) is one row, and the rowcount says how many
# were new.
_COLUMNS = ", ".join(FIELD_NAMES)
_SQLITE_INSERT = (
    f"INSERT INTO usage_log ({_COLUMNS}) VALUES ({', '.join('?' for _ in FIELD_NAMES)}) "
    "ON CONFLICT (request_id) DO NOTHING"
)
_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
# Strings go in as text: a cast to VARCHAR(n) would silently truncate an over-long value,
# where the column itself refuses it (and the recorder sets the row aside).
_PG_TYPES = [
    "text" if isinstance(column.type, String) else column.type.compile(dialect=_PG_DIALECT)
    for column in (usage_log.c[name] for name in FIELD_NAMES)
]
# PostgreSQL: the whole batch as one array per column, in one round trip.
_PG_INSERT = (
    f"INSERT INTO usage_log ({_COLUMNS}) SELECT * FROM unnest("
    + ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(_PG_TYPES, start=1))
    + ") ON CONFLICT (request_id) DO NOTHING"
)
_TIMESTAMP = FIELD_NAMES.index("timestamp")
# How SQLAlchemy's SQLite DateTime stores a value, so reads and range queries see the same.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def _values(record: UsageRecord, *, sqlite: bool) -> tuple[Any, ...]:
    values = [getattr(record, name) for name in FIELD_NAMES]
    stamp = record.timestamp.astimezone(UTC)
    # SQLite keeps the wall-clock digits without the zone: make them UTC's.
    values[_TIMESTAMP] = stamp.strftime(_SQLITE_TIME) if sqlite else stamp
    return tuple(values)


async def insert_batch(engine: AsyncEngine, batch: Sequence[UsageRecord]) -> int:
    """Insert `batch` in one transaction; return how many were new (the rest were duplicates)."""
    if not batch:
        return 0
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            columns = tuple(zip(*(_values(r, sqlite=False) for r in batch), strict=True))
            result = await conn.exec_driver_sql(_PG_INSERT, columns)
        else:
            rows = [_values(r, sqlite=True) for r in batch]
            result = await conn.exec_driver_sql(_SQLITE_INSERT, rows)
        return int(result.rowcount)


def is_row_error(exc: BaseException) -> bool:
    """True when the database refused a row for its content (not for being unreachable).

    SQLAlchemy's asyncpg adapter reports these as a bare DBAPIError, so the SQLSTATE class
    decides there: 22 (data exception, e.g. a value too long) or 23 (constraint violation).
    """
    if isinstance(exc, (DataError, IntegrityError)):
        return True
    if isinstance(exc, DBAPIError):
        state = getattr(exc.orig, "sqlstate", None)
        return isinstance(state, str) and state[:2] in ("22", "23")
    return False
