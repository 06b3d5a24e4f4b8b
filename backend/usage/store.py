"""Writing records to `usage_log`: one transaction per batch, idempotent by request id."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from datetime import UTC
from operator import attrgetter
from typing import Any

import orjson
from asyncpg import UniqueViolationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.usage.record import FIELD_NAMES, UsageRecord

# One statement per dialect, written once: SQLAlchemy's compiled INSERT with RETURNING
# processed every value of every row in Python, a third of a record's cost. Every path is
# idempotent by request id: a record written twice (a replay after a batch that committed
# but whose acknowledgement was lost) is one row, and the count says how many were new.
_COLUMNS = ", ".join(FIELD_NAMES)
# SQLite: a batch as multi-row INSERTs, not executemany: the driver releases and retakes the
# GIL around every row's step, and each time the event loop's thread holds it the writer's
# thread waits for it (about 5 futex calls a request under load, half of them gone this
# way). Statements come in a few fixed sizes, so that the driver's statement cache holds a
# handful of prepared statements, not one per batch size seen (each of those is large).
# SQLite before 3.32 takes at most 999 parameters in a statement, newer ones 32,766.
_SQLITE_ROW = f"({', '.join('?' for _ in FIELD_NAMES)})"
_SQLITE_MAX_ROWS = (32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999) // len(FIELD_NAMES)
SQLITE_CHUNKS = tuple(n for n in (256, 64, 16, 4, 1) if n <= _SQLITE_MAX_ROWS)
# PostgreSQL, when a batch holds a request id already stored: the batch as one JSON array
# (orjson writes the dataclasses in C), read into the table's own row type, which still
# refuses an over-long string (SQLSTATE 22001) as the column would.
_PG_INSERT = (
    f"INSERT INTO usage_log ({_COLUMNS}) SELECT {_COLUMNS} "
    "FROM json_populate_recordset(NULL::usage_log, $1::json) "
    "ON CONFLICT (request_id) DO NOTHING"
)
_TIMESTAMP = FIELD_NAMES.index("timestamp")
# How SQLAlchemy's SQLite DateTime stores a value, so reads and range queries see the same.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
_row = attrgetter(*FIELD_NAMES)  # a record's values in column order, as one tuple, in C


class ValueRefused(ValueError):
    """A record holds a value its column cannot take (found by the driver, before sending)."""


def _sqlite_values(record: UsageRecord) -> tuple[Any, ...]:
    values = list(_row(record))
    # SQLite keeps the wall-clock digits without the zone: make them UTC's.
    values[_TIMESTAMP] = record.timestamp.astimezone(UTC).strftime(_SQLITE_TIME)
    return tuple(values)


async def insert_batch(engine: AsyncEngine, batch: Sequence[UsageRecord]) -> int:
    """Insert `batch` in one transaction; return how many were new (the rest were duplicates)."""
    if not batch:
        return 0
    if engine.dialect.name == "postgresql":
        return await _insert_postgresql(engine, batch)
    inserted = 0
    async with engine.begin() as conn:
        start = 0
        for size in _chunk_sizes(len(batch)):
            values = [v for r in batch[start:start + size] for v in _sqlite_values(r)]
            result = await conn.exec_driver_sql(_sqlite_insert(size), tuple(values))
            inserted += int(result.rowcount)
            start += size
    return inserted


def _chunk_sizes(rows: int) -> list[int]:
    """`rows` as a sum of SQLITE_CHUNKS' sizes, largest first."""
    sizes = []
    for size in SQLITE_CHUNKS:
        count, rows = divmod(rows, size)
        sizes += [size] * count
    return sizes


@functools.lru_cache(maxsize=len(SQLITE_CHUNKS))
def _sqlite_insert(rows: int) -> str:
    return (f"INSERT INTO usage_log ({_COLUMNS}) VALUES {', '.join([_SQLITE_ROW] * rows)} "
            "ON CONFLICT (request_id) DO NOTHING")


async def _insert_postgresql(engine: AsyncEngine, batch: Sequence[UsageRecord]) -> int:
    # A binary COPY first: per row it costs the database a third less CPU than any INSERT
    # we tried (the JSON one above, or one typed array per column) and the portal ~3 us,
    # and on a small host the database's CPU is the chat's. COPY knows no ON CONFLICT, so a
    # batch holding a stored request id (rare: replays) fails whole and goes again as the
    # idempotent INSERT. Each is one statement, so one transaction of its own: no BEGIN and
    # COMMIT round trips. The pool (and its pre-ping) is SQLAlchemy's; its adapter has
    # begun no transaction on the connection, so it has none to end.
    async with engine.connect() as conn:
        pg: Any = (await conn.get_raw_connection()).driver_connection  # asyncpg, untyped
        try:
            await pg.copy_records_to_table(
                "usage_log", records=[_row(r) for r in batch], columns=FIELD_NAMES
            )
            return len(batch)
        except (OverflowError, TypeError, ValueError) as exc:
            # asyncpg's binary encoders refuse a value (an int past int4, a str for an int)
            # in Python, where the server would have said SQLSTATE 22: a row error all the
            # same, which the recorder sets aside instead of retrying the batch forever.
            raise ValueRefused(str(exc)) from exc
        except UniqueViolationError:
            payload = orjson.dumps(batch, option=orjson.OPT_NAIVE_UTC).decode()
            status: str = await pg.execute(_PG_INSERT, payload)
            return int(status.rsplit(" ", 1)[1])  # "INSERT 0 <rows>"


def is_row_error(exc: BaseException) -> bool:
    """True when the database refused a row for its content (not for being unreachable).

    Decided by the SQLSTATE class: 22 (data exception, e.g. a value too long) or 23
    (constraint violation). asyncpg's own errors carry it (the COPY path), and SQLAlchemy's
    asyncpg adapter wraps them in a bare DBAPIError that carries it on `orig`. A value the
    driver could not even encode is a ValueRefused.
    """
    if isinstance(exc, (DataError, IntegrityError, ValueRefused)):
        return True
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(orig, "sqlstate", None)
    return isinstance(state, str) and state[:2] in ("22", "23")
