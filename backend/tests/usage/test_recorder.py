"""The writer on a real database: batches, idempotence, spill, outage, drain, replay, rejects."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.tests.usage.helpers import count_rows, eventually, fetch_rows, make_record
from backend.usage.record import UsageRecord
from backend.usage.recorder import RecorderConfig, UsageRecorder
from backend.usage.spool import REJECTED_FILE, Spool
from backend.usage.store import SQLITE_CHUNKS, insert_batch, is_row_error

FAST = RecorderConfig(
    batch_size=50, flush_interval=0.01, write_timeout=3, retry_initial=0.05, retry_max=0.2
)


@pytest.fixture
async def recorder(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[UsageRecorder]:
    """A started recorder writing to the test's database, spooling under tmp_path."""
    recorder = UsageRecorder(engine, Spool(tmp_path / "spool"), FAST)
    recorder.start()
    yield recorder
    await recorder.close()


async def _break_table(engine: AsyncEngine) -> None:
    # A failing database without stopping it: every insert fails until _repair_table.
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE usage_log RENAME TO usage_log_away"))


async def _repair_table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE usage_log_away RENAME TO usage_log"))


async def _all_written(engine: AsyncEngine, recorder: UsageRecorder, n: int) -> None:
    async def done() -> bool:
        return recorder.spool_records == 0 and await count_rows(engine) >= n

    await eventually(done)


async def test_records_are_written_in_batches_one_row_each(
    engine: AsyncEngine, recorder: UsageRecorder
) -> None:
    records = [make_record(input_tokens=i) for i in range(230)]
    for record in records:
        recorder.record(record)
    await recorder.flush()
    rows = await fetch_rows(engine)
    assert [r["request_id"] for r in rows] == [r.request_id for r in records]
    assert rows[7]["input_tokens"] == 7 and rows[7]["timestamp"] is not None
    assert recorder.counters.written == 230 and recorder.spool_records == 0


async def test_a_record_written_twice_is_one_row(
    engine: AsyncEngine, recorder: UsageRecorder
) -> None:
    record = make_record()
    recorder.record(record)
    recorder.record(record)
    await recorder.flush()
    assert await insert_batch(engine, [record, make_record(request_id=record.request_id)]) == 0
    assert await count_rows(engine) == 1
    assert recorder.counters.duplicates == 1


async def test_a_batch_larger_than_one_statement_is_written_whole_in_order(
    engine: AsyncEngine,
) -> None:
    # SQLite takes a batch as multi-row INSERTs of a few fixed sizes: a batch of several
    # such statements of every size, with stored ids in more than one of them, is still one
    # transaction's worth of rows in batch order, and the count is of the new ones only.
    stored = [make_record() for _ in range(5)]
    assert await insert_batch(engine, stored) == 5
    fresh = [make_record(input_tokens=i) for i in range(sum(SQLITE_CHUNKS) * 2 + 3)]
    batch = [*fresh[:3], stored[0], *fresh[3:], *stored[1:]]
    assert await insert_batch(engine, batch) == len(fresh)
    rows = await fetch_rows(engine)
    assert [r["request_id"] for r in rows] == [r.request_id for r in [*stored, *fresh]]
    assert [r["input_tokens"] for r in rows[5:]] == list(range(len(fresh)))


async def test_every_field_reads_back_as_written_on_either_path(engine: AsyncEngine) -> None:
    # PostgreSQL writes a fresh batch with COPY, and one holding a stored request id as an
    # INSERT of JSON: each value must come back as the record held it, both ways.
    offset = timezone(timedelta(hours=-5))

    def full(**overrides: object) -> UsageRecord:
        return make_record(
            timestamp=datetime(2026, 3, 1, 7, 8, 9, 123456, tzinfo=offset),
            specialist_name='Quote " back\\slash, comma and Zürich ✓',
            estimated_cost_usd=0.1 + 0.2, latency_ms=1e-7, input_tokens=2**31 - 1,
            success=False, streamed=True, error_kind="upstream_timeout",
            cached_input_tokens=17, tokens_estimated=True, specialist_version=3,
            prompt_hash="f" * 64, rate_limit_key_kind="user", **overrides,
        )

    first = [full(), make_record(user_email_hash=None, estimated_cost_usd=None)]
    assert await insert_batch(engine, first) == 2
    second = [first[0], full(model="gpt-4o-mini"), make_record(cached_input_tokens=None)]
    assert await insert_batch(engine, second) == 2  # the stored one is skipped
    rows = await fetch_rows(engine)
    for record, row in zip([*first, *second[1:]], rows, strict=True):
        stamp = row.pop("timestamp")
        assert stamp.replace(tzinfo=stamp.tzinfo or UTC) == record.timestamp
        row.pop("id")
        assert row == {k: v for k, v in record.row().items() if k != "timestamp"}


async def test_the_idempotent_path_refuses_what_the_column_refuses(engine: AsyncEngine) -> None:
    # A batch with a stored request id takes PostgreSQL's INSERT of JSON, not COPY: an
    # over-long string must still be refused there, not cut to the column's length.
    stored = make_record()
    await insert_batch(engine, [stored])
    too_long = _unbounded(make_record(), model="m" * 300)  # VARCHAR(200)
    if engine.dialect.name == "sqlite":  # SQLite keeps any length: nothing to refuse
        assert await insert_batch(engine, [stored, too_long]) == 1
        return
    with pytest.raises(Exception) as refused:
        await insert_batch(engine, [stored, too_long])
    assert is_row_error(refused.value)
    assert await count_rows(engine) == 1


async def test_a_full_queue_spills_to_the_spool_without_blocking_or_dropping(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    recorder = UsageRecorder(
        engine, Spool(tmp_path / "spool"),
        RecorderConfig(max_queue=5, batch_size=5, flush_interval=0.01, retry_initial=0.05),
    )
    recorder.start()
    try:
        records = [make_record() for _ in range(60)]
        started = time.perf_counter()
        for record in records:  # no await in between: the writer can't drain meanwhile
            recorder.record(record)
        assert time.perf_counter() - started < 0.05
        assert recorder.counters.spilled == 55
        await recorder.flush()
        await _all_written(engine, recorder, 60)
        rows = await fetch_rows(engine)
        assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in records)
    finally:
        await recorder.close()


async def test_a_failing_database_spools_then_replays_in_order(
    engine: AsyncEngine, recorder: UsageRecorder
) -> None:
    await _break_table(engine)
    records = [make_record() for _ in range(120)]
    for record in records[:60]:
        recorder.record(record)
    await recorder.flush()
    status = recorder.status()
    assert status.database == "unavailable" and status.spool_records == 60
    assert status.last_error is not None

    for record in records[60:]:  # keep coming during the outage
        recorder.record(record)
    await recorder.flush()
    assert recorder.spool_records == 120
    await _repair_table(engine)

    await _all_written(engine, recorder, 120)
    rows = await fetch_rows(engine)
    assert [r["request_id"] for r in rows] == [r.request_id for r in records]  # in order
    assert recorder.status().database == "ok" and recorder.counters.replayed == 120


async def test_shutdown_drains_to_the_spool_and_the_next_start_replays_it(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    first = UsageRecorder(engine, Spool(spool_dir), FAST)
    first.start()
    await _break_table(engine)
    records = [make_record() for _ in range(25)]
    for record in records:
        first.record(record)
    await first.close()  # drains: nothing left in memory
    assert first.spool_records == 25

    await _repair_table(engine)
    second = UsageRecorder(engine, Spool(spool_dir), FAST)
    assert second.spool_records == 25  # found at start-up
    second.start()
    try:
        await _all_written(engine, second, 25)
        assert sorted(r["request_id"] for r in await fetch_rows(engine)) == sorted(
            r.request_id for r in records
        )
    finally:
        await second.close()


async def test_shutdown_with_the_database_up_writes_everything_queued(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    recorder = UsageRecorder(
        engine, Spool(tmp_path / "spool"), RecorderConfig(batch_size=10, flush_interval=5)
    )
    recorder.start()
    for _ in range(35):
        recorder.record(make_record())
    await recorder.close()  # well before the 5 s linger would end
    assert await count_rows(engine) == 35 and recorder.spool_records == 0


def _unbounded(record: UsageRecord, **values: Any) -> UsageRecord:
    # A record builds its strings to fit their columns (record.py); past that bound, as a
    # bug or an older spool could be, the database's refusal is still the last line.
    for name, value in values.items():
        object.__setattr__(record, name, value)
    return record


def _poisons(dialect: str) -> list[UsageRecord]:
    # Values each database refuses for their content, not for being down.
    if dialect == "postgresql":
        # (An over-long string or a NUL is no poison any more: a record is bounded when it
        # is built, a spooled one again when it is replayed; test_long_strings.py.)
        return [
            make_record(specialist_version=-(2**40)),  # past INTEGER, the other way
            make_record(input_tokens=2**40),  # past INTEGER: asyncpg's encoder refuses it
        ]
    return [make_record(latency_ms=math.nan)]  # SQLite stores NaN as NULL: NOT NULL fails


async def test_a_row_the_database_refuses_is_set_aside_and_the_rest_still_flow(
    engine: AsyncEngine, recorder: UsageRecorder, tmp_path: Path
) -> None:
    good = [make_record() for _ in range(10)]
    bad = _poisons(engine.dialect.name)
    for record in [*good[:5], *bad, *good[5:]]:
        recorder.record(record)
    await recorder.flush()
    await _all_written(engine, recorder, 10)
    rows = await fetch_rows(engine)
    assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in good)
    assert recorder.counters.rejected == len(bad)
    rejected = (tmp_path / "spool" / REJECTED_FILE).read_bytes()
    assert all(record.request_id.encode() in rejected for record in bad)
    later = make_record()
    recorder.record(later)  # the spool is not stuck behind the bad rows
    await recorder.flush()
    await _all_written(engine, recorder, 11)


async def test_a_spill_wakes_an_idle_writer(engine: AsyncEngine, tmp_path: Path) -> None:
    # The spill's fsync ends after the writer has emptied the queue and gone idle: the
    # spooled record must still reach the database without waiting for more traffic.
    recorder = UsageRecorder(
        engine, Spool(tmp_path / "spool"),
        RecorderConfig(max_queue=1, batch_size=1, flush_interval=0, retry_initial=0.05),
    )
    recorder.start()
    try:
        for round_ in range(1, 11):
            recorder.record(make_record())
            recorder.record(make_record())  # queue full: spilled
            await recorder.flush()
            await eventually(lambda n=2 * round_: _count_is(engine, recorder, n), within=3)
    finally:
        await recorder.close()


async def _count_is(engine: AsyncEngine, recorder: UsageRecorder, n: int) -> bool:
    return recorder.spool_records == 0 and await count_rows(engine) == n
