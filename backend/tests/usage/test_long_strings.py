"""A string longer than its column is cut and marked, never the reason a billable row is lost."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.tests.usage.helpers import ADMIN_TOKEN, count_rows, eventually, fetch_rows, make_record
from backend.tests.usage.portal import chat_body, running_portal
from backend.usage.record import TRUNCATED, UsageRecord
from backend.usage.store import insert_batch

LONG_MODEL = "gpt-4o-" + "x" * 993  # 1,000 characters, as any OpenAI-compatible upstream may say


async def test_over_long_strings_are_cut_to_fit_and_marked(engine: AsyncEngine) -> None:
    record = make_record(
        model=LONG_MODEL, specialist_name="N" * 500, error_kind="e" * 100,
        rate_limit_key_kind="k" * 40, success=False,
    )
    assert await insert_batch(engine, [record]) == 1
    [row] = await fetch_rows(engine)
    assert len(row["model"]) == 200 and row["model"].endswith(TRUNCATED)
    assert row["model"].startswith("gpt-4o-xxx")
    assert len(row["specialist_name"]) == 200 and row["specialist_name"].endswith(TRUNCATED)
    assert len(row["error_kind"]) == 64 and row["error_kind"].endswith(TRUNCATED)
    assert row["rate_limit_key_kind"] == "k" * 15 + "…"  # too short a column for the word
    assert (row["input_tokens"], row["estimated_cost_usd"]) == (10, 0.001)  # the bill is kept


async def test_a_nul_is_replaced_and_short_strings_are_untouched(engine: AsyncEngine) -> None:
    record = make_record(model="gpt\x00-4o")
    await insert_batch(engine, [record])
    [row] = await fetch_rows(engine)
    assert row["model"] == "gpt\ufffd-4o"
    assert make_record(model="gpt-4o").model == "gpt-4o"
    # A spooled record (written by a version without the bound) is bounded on replay too.
    line = make_record().to_json().replace(b'"gpt-4o"', b'"' + b"y" * 300 + b'"')
    replayed = UsageRecord.from_json(line)
    assert len(replayed.model) == 200


async def test_a_long_upstream_model_name_keeps_the_row(database_url: str, tmp_path: Path) -> None:
    async with running_portal(tmp_path, database_url) as portal:
        portal.fakes["openai"].script.model = LONG_MODEL
        response = await portal.client.post("/chat/send", json=chat_body("openai"))
        assert response.status_code == 200

        async def written() -> bool:
            return await count_rows(portal.engine) == 1

        await eventually(written)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        status = (await portal.client.get("/usage/status", headers=admin)).json()
        [row] = await fetch_rows(portal.engine)
    assert status["counters"]["rejected"] == 0
    assert row["model"] == LONG_MODEL[: 200 - len(TRUNCATED)] + TRUNCATED
    assert row["request_id"] == response.headers["x-request-id"]
    assert row["input_tokens"] > 0 and row["success"] is True
