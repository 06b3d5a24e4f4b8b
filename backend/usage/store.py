"""Writing records to `usage_log`: one transaction per batch, idempotent by request id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.usage.record import UsageRecord
from backend.usage.table import usage_log


def _insert(dialect: str) -> Insert:
    # Both dialects spell it the same: a record written twice (a replay after a batch that
    # committed but whose acknowledgement was lost) is one row.
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement: Insert = module.insert(usage_log).on_conflict_do_nothing(
        index_elements=["request_id"]
    )
    return statement.returning(usage_log.c.request_id)


def _row(record: UsageRecord) -> dict[str, Any]:
    row = record.row()
    # SQLite stores the wall-clock digits without the zone: make them UTC's.
    row["timestamp"] = record.timestamp.astimezone(UTC)
    return row


async def insert_batch(engine: AsyncEngine, batch: Sequence[UsageRecord]) -> int:
    """Insert `batch` in one transaction; return how many were new (the rest were duplicates)."""
    if not batch:
        return 0
    statement = _insert(engine.dialect.name)
    async with engine.begin() as conn:
        result = await conn.execute(statement, [_row(r) for r in batch])
        return len(result.all())


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
