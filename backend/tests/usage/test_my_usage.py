"""GET /me/usage: the caller's own totals, this period by default, never anyone else's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backend.budgets.periods import period_at
from backend.tests.usage.helpers import ADMIN_TOKEN, make_record
from backend.tests.usage.portal import Portal, running_portal
from backend.usage.identity import hash_email
from backend.usage.record import UsageRecord
from backend.usage.store import insert_batch

ALICE, BOB = "alice@example.com", "bob@example.com"


def _as(email: str) -> dict[str, str]:
    return {"X-User-Email": email}


def _records(portal: Portal, now: datetime) -> dict[str, list[UsageRecord]]:
    """Alice's, Bob's and an anonymous caller's rows, this month and the month before."""
    month = period_at(now, "month", "UTC")
    this_month = month.start + (now - month.start) / 2  # always in [month start, now)
    last_month = month.start - timedelta(days=1)
    secret = portal.settings.hash_secret()
    alice, bob = hash_email(secret, ALICE), hash_email(secret, BOB)
    return {
        "alice_now": [
            make_record(user_email_hash=alice, timestamp=this_month, input_tokens=100,
                        output_tokens=40, estimated_cost_usd=0.25),
            make_record(user_email_hash=alice, timestamp=this_month, input_tokens=7,
                        output_tokens=0, estimated_cost_usd=None, success=False),
        ],
        "alice_before": [
            make_record(user_email_hash=alice, timestamp=last_month, input_tokens=999,
                        estimated_cost_usd=9.0),
        ],
        "others": [
            make_record(user_email_hash=bob, timestamp=this_month, input_tokens=5000,
                        estimated_cost_usd=3.0),
            make_record(user_email_hash=None, timestamp=this_month, input_tokens=8000,
                        estimated_cost_usd=4.0),
        ],
    }


@pytest.fixture
async def portal(database_url: str, tmp_path: Path) -> Any:
    """A portal in AUTH_MODE=none (the user is X-User-Email) holding the rows above."""
    async with running_portal(tmp_path, database_url) as portal:
        portal.rows = _records(portal, datetime.now(UTC))  # type: ignore[attr-defined]
        await insert_batch(portal.engine, [r for rs in portal.rows.values() for r in rs])  # type: ignore[attr-defined]
        yield portal


async def test_a_user_sees_their_own_spend_this_month_and_nobody_elses(portal: Portal) -> None:
    response = await portal.client.get("/me/usage", headers=_as(ALICE))
    assert response.status_code == 200, response.text
    mine = response.json()
    month = period_at(datetime.now(UTC), "month", "UTC")
    assert mine["period"] == month.id
    assert datetime.fromisoformat(mine["from"]) == month.start
    assert (mine["requests"], mine["failures"], mine["unpriced_requests"]) == (2, 1, 1)
    assert (mine["input_tokens"], mine["output_tokens"]) == (107, 40)
    assert mine["cost_usd"] == pytest.approx(0.25)

    # The same sums as the admin's report filtered to Alice's hash over the same range.
    alice = portal.rows["alice_now"][0].user_email_hash  # type: ignore[attr-defined]
    report = (await portal.client.get("/usage/summary", params={
        "from": mine["from"], "to": mine["to"], "user_email_hash": alice,
    }, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})).json()["totals"]
    for field in ("requests", "failures", "input_tokens", "output_tokens", "cost_usd"):
        assert report[field] == mine[field], field

    bob = (await portal.client.get("/me/usage", headers=_as(BOB.upper()))).json()
    assert (bob["requests"], bob["input_tokens"], bob["cost_usd"]) == (1, 5000, 3.0)
    # A filter of the admin report is no parameter here: Alice asking for Bob's hash still
    # gets her own figures.
    other = portal.rows["others"][0].user_email_hash  # type: ignore[attr-defined]
    spoofed = await portal.client.get(
        "/me/usage", params={"user_email_hash": other}, headers=_as(ALICE)
    )
    assert spoofed.json()["requests"] == 2


async def test_a_range_can_be_asked_for(portal: Portal) -> None:
    before = portal.rows["alice_before"][0].timestamp  # type: ignore[attr-defined]
    ranged = (await portal.client.get("/me/usage", params={
        "from": (before - timedelta(hours=1)).isoformat(),
        "to": (before + timedelta(hours=1)).isoformat(),
    }, headers=_as(ALICE))).json()
    assert (ranged["requests"], ranged["input_tokens"], ranged["period"]) == (1, 999, None)

    # `to` alone: the month before it (`to` on the 1st means the month that just ended).
    month_start = period_at(datetime.now(UTC), "month", "UTC").start
    last = (await portal.client.get(
        "/me/usage", params={"to": month_start.isoformat()}, headers=_as(ALICE)
    )).json()
    assert last["period"] == period_at(before, "month", "UTC").id
    assert (last["requests"], last["cost_usd"]) == (1, 9.0)


async def test_no_identified_caller_and_bad_ranges_are_refused(portal: Portal) -> None:
    anonymous = await portal.client.get("/me/usage")
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "token_missing"
    for params in ({"from": "2026-11-02", "to": "2026-11-01"}, {"from": "yesterday"},
                   {"to": "0.5"}):
        response = await portal.client.get("/me/usage", params=params, headers=_as(ALICE))
        assert response.status_code == 422, (params, response.text)
        assert "error" in response.json()


async def test_with_budgets_the_default_range_is_the_budget_period(
    tmp_path: Path,
) -> None:
    async with running_portal(
        tmp_path, f"sqlite:///{tmp_path / 'u.db'}", budget_backend="memory",
        budget_user_usd=50.0, budget_period="week", budget_timezone="Europe/Berlin",
    ) as portal:
        now = datetime.now(UTC)
        week = period_at(now, "week", "Europe/Berlin")
        alice = hash_email(portal.settings.hash_secret(), ALICE)
        await insert_batch(portal.engine, [
            make_record(user_email_hash=alice, timestamp=week.start + (now - week.start) / 2,
                        estimated_cost_usd=1.5),
            make_record(user_email_hash=alice, timestamp=week.start - timedelta(seconds=1),
                        estimated_cost_usd=7.0),
        ])
        mine = (await portal.client.get("/me/usage", headers=_as(ALICE))).json()
        budget = (await portal.client.get("/me/budget", headers=_as(ALICE))).json()
        assert mine["period"] == budget["period"] == week.id
        assert datetime.fromisoformat(mine["from"]) == week.start
        assert (mine["requests"], mine["cost_usd"]) == (1, 1.5)


async def test_the_openapi_document_describes_it(portal: Portal) -> None:
    document = (await portal.client.get("/openapi.json")).json()
    operation = document["paths"]["/me/usage"]["get"]
    assert {"200", "401", "422", "503"} <= set(operation["responses"])
    names = {p["name"] for p in operation["parameters"]}
    assert names == {"from", "to"}
