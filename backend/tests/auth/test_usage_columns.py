"""The usage writer stores cost_center and auth_method on both databases (COPY included),
and a spool line from before migration 0003 still replays."""

from __future__ import annotations

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.tests.usage.conftest import engine
from backend.tests.usage.helpers import make_record
from backend.usage.record import UsageRecord
from backend.usage.store import insert_batch
from backend.usage.table import usage_log

__all__ = ["engine"]


async def test_both_columns_are_written_and_read_back(engine: AsyncEngine) -> None:
    records = [
        make_record(cost_center="CC-1", auth_method="jwt"),
        make_record(auth_method="api_key"),
    ]
    assert await insert_batch(engine, records) == 2
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(usage_log.c.cost_center, usage_log.c.auth_method).order_by(usage_log.c.id)
        )).all()
    assert [tuple(r) for r in rows] == [("CC-1", "jwt"), (None, "api_key")]


def test_an_old_spool_line_replays_without_the_new_fields() -> None:
    line = orjson.loads(make_record().to_json())
    del line["cost_center"], line["auth_method"]
    record = UsageRecord.from_json(orjson.dumps(line))
    assert (record.cost_center, record.auth_method) == (None, None)
