"""Writing records to `usage_log`: one transaction per batch, idempotent by request id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

import orjson
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.usage.record import FIELD_NAMES, UsageRecord

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
# PostgreSQL: the whole batch as one JSON array, read into the table's own row type. orjson
# writes the records (dataclasses, RFC 3339 timestamps) in C, where one typed array per
# column cost the writer three times the CPU in asyncpg's encoders; the writer shares the
# request path's event loop, so its CPU is the chat's. The row type keeps each column's
# length: an over-long string is refused (SQLSTATE 22001) and the recorder sets the row
# aside, as the column itself would.
_PG_INSERT = (
    f"INSERT INTO usage_log ({_COLUMNS}) SELECT {_COLUMNS} "
    "FROM json_populate_recordset(NULL::usage_log, $1::json) "
    "ON CONFLICT (request_id) DO NOTHING"
)
_TIMESTAMP = FIELD_NAMES.index("timestamp")
# How SQLAlchemy's SQLite DateTime stores a value, so reads and range queries see the same.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def _sqlite_values(record: UsageRecord) -> tuple[Any, ...]:
    values = [getattr(record, name) for name in FIELD_NAMES]
    # SQLite keeps the wall-clock digits without the zone: make them UTC's.
    values[_TIMESTAMP] = record.timestamp.astimezone(UTC).strftime(_SQLITE_TIME)
    return tuple(values)


async def insert_batch(engine: AsyncEngine, batch: Sequence[UsageRecord]) -> int:
    """Insert `batch` in one transaction; return how many were new (the rest were duplicates)."""
    if not batch:
        return 0
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            payload = orjson.dumps(batch, option=orjson.OPT_NAIVE_UTC).decode()
            result = await conn.exec_driver_sql(_PG_INSERT, (payload,))
        else:
            rows = [_sqlite_values(r) for r in batch]
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
