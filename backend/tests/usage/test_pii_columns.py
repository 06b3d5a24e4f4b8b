"""The PII guard's usage columns on every path to the table: the COPY and INSERT batches
on both databases, and a spool line replayed."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection

from backend.database.engine import make_engine
from backend.database.migrations import alembic_config, upgrade
from backend.tests.usage.helpers import fetch_rows, make_record
from backend.usage.record import UsageRecord
from backend.usage.store import insert_batch

COUNTS = orjson.dumps({"card": 1, "iban": 2}).decode()


async def test_pii_columns_are_written_and_read_back(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await upgrade(engine)
        masked = make_record(pii_action="masked", pii_counts=COUNTS)
        blocked = make_record(pii_action="blocked", pii_counts=COUNTS, success=False)
        plain = make_record()
        assert await insert_batch(engine, [masked, blocked, plain]) == 3  # the COPY path
        # A replay holding a stored request id takes the idempotent INSERT path.
        again = make_record(pii_action="masked", pii_counts=COUNTS)
        assert await insert_batch(engine, [masked, again]) == 1
        rows = {row["request_id"]: row for row in await fetch_rows(engine)}
        assert (rows[masked.request_id]["pii_action"], rows[masked.request_id]["pii_counts"]) == (
            "masked", COUNTS,
        )
        assert rows[blocked.request_id]["pii_action"] == "blocked"
        assert rows[again.request_id]["pii_counts"] == COUNTS
        assert (rows[plain.request_id]["pii_action"], rows[plain.request_id]["pii_counts"]) == (
            None, None,
        )
    finally:
        await engine.dispose()


def test_a_spool_line_keeps_the_pii_columns() -> None:
    record = make_record(pii_action="masked", pii_counts=COUNTS)
    assert UsageRecord.from_json(record.to_json()) == record
    # A line written before the columns existed still replays, as "nothing found".
    old = orjson.loads(record.to_json())
    del old["pii_action"], old["pii_counts"]
    assert UsageRecord.from_json(orjson.dumps(old)).pii_action is None


async def test_migrating_from_0001_keeps_the_rows_and_adds_empty_columns(
    database_url: str,
) -> None:
    config = alembic_config()
    engine = make_engine(database_url)

    def to(revision: str) -> Callable[[Connection], None]:
        def run(connection: Connection) -> None:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        return run

    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0001"))
            await conn.execute(
                text(
                    "INSERT INTO usage_log (timestamp, specialist_id, specialist_name, provider,"
                    " model, input_tokens, output_tokens, latency_ms, success, request_id,"
                    " streamed, tokens_estimated) VALUES (CURRENT_TIMESTAMP, 's', 'S', 'openai',"
                    " 'gpt-4o', 1, 2, 3.0, true, 'before-0004', false, false)"
                )
            )
        async with engine.begin() as conn:
            await conn.run_sync(to("head"))  # 0004 and whatever followed it
        (row,) = await fetch_rows(engine)
        assert row["request_id"] == "before-0004" and row["input_tokens"] == 1
        assert row["pii_action"] is None and row["pii_counts"] is None
    finally:
        await engine.dispose()
