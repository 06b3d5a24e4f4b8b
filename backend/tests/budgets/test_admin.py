"""The admin API over budgets: set, list, drop, audited; users kept only as hashes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.budgets.table import budget_audit, budget_limits
from backend.database.engine import make_engine
from backend.governance.audit import verify
from backend.tests.budgets.helpers import chat, exact_usage, headers, user_hash, worst_case_usd
from backend.tests.budgets.test_api import portal_with
from backend.tests.usage.helpers import ADMIN_TOKEN

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_a_budget_set_through_the_api_wins_and_is_audited(portal_factory: Any) -> None:
    portal = await portal_with(
        portal_factory, admin_token=ADMIN_TOKEN, budgets={"users": {"i@x.com": 100.0}})
    exact_usage(portal.fakes["openai"])
    client = portal.client
    listed = (await client.get("/admin/budgets", headers=ADMIN)).json()
    assert listed["budgets"] == [{
        "scope": "user", "name": user_hash("i@x.com"), "limit_usd": 100.0,
        "source": "settings", "updated_at": None, "updated_by": None}]

    put = await client.put(
        "/admin/budgets/user/i@x.com", json={"limit_usd": 0.5 * worst_case_usd()}, headers=ADMIN)
    assert put.status_code == 200
    assert put.json()["old_usd"] is None and put.json()["name"] == user_hash("i@x.com")
    refused = await client.post("/chat/send", content=chat(), headers=headers("i@x.com"))
    assert refused.status_code == 402  # at once: the API's value wins over the settings'
    listed = (await client.get("/admin/budgets", headers=ADMIN)).json()["budgets"]
    assert [(b["source"], b["updated_by"]) for b in listed] == [("api", "admin_token")]

    dropped = await client.delete("/admin/budgets/user/i@x.com", headers=ADMIN)
    assert dropped.json()["new_usd"] is None
    served = await client.post("/chat/send", content=chat(), headers=headers("i@x.com"))
    assert served.status_code == 200  # the settings' 100 USD applies again

    audit = (await client.get("/admin/budgets/audit", headers=ADMIN)).json()
    assert [(a["action"], a["old_usd"], a["new_usd"]) for a in audit] == [
        ("delete", 0.5 * worst_case_usd(), None), ("set", None, 0.5 * worst_case_usd())]
    engine = make_engine(portal.settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = [*(await conn.execute(select(budget_audit))),
                    *(await conn.execute(select(budget_limits)))]
    finally:
        await engine.dispose()
    assert rows and not any("i@x.com" in str(tuple(row)) for row in rows)

    # The same two changes are in the tamper-evident chain, with the request that made them.
    target = f"budget/user/{user_hash('i@x.com')}"
    chain = (await client.get("/admin/audit", params={"target": target},
                              headers=ADMIN)).json()["entries"]
    assert [(e["action"], e["before"], e["after"], e["actor"]) for e in chain] == [
        ("budget.delete", {"limit_usd": 0.5 * worst_case_usd()}, None, "admin_token"),
        ("budget.set", None, {"limit_usd": 0.5 * worst_case_usd()}, "admin_token"),
    ]
    assert all(e["request_id"] for e in chain) and "i@x.com" not in str(chain)
    engine = make_engine(portal.settings.database_url)
    try:
        assert (await verify(engine)).broken is None
    finally:
        await engine.dispose()


async def test_a_portal_budget_is_shared_by_everyone(portal_factory: Any) -> None:
    portal = await portal_with(portal_factory, admin_token=ADMIN_TOKEN)
    exact_usage(portal.fakes["openai"])
    client = portal.client
    put = await client.put(
        "/admin/budgets/portal/portal", json={"limit_usd": 2.5 * worst_case_usd()},
        headers=ADMIN)
    assert put.status_code == 200
    statuses = [
        (await client.post("/chat/send", content=chat(), headers=headers(f"{n}@x.com")))
        .status_code for n in "jklm"
    ]
    assert statuses == [200, 200, 402, 402]  # four users, one shared cap


async def test_the_admin_api_refuses_strangers_and_nonsense(portal_factory: Any) -> None:
    portal = await portal_with(portal_factory, admin_token=ADMIN_TOKEN)
    client = portal.client
    assert (await client.get("/admin/budgets")).status_code == 401
    assert (await client.put(
        "/admin/budgets/user/x@x.com", json={"limit_usd": 1}, headers=headers("x@x.com")
    )).status_code == 401
    wrong_scope = await client.put("/admin/budgets/team/x", json={"limit_usd": 1}, headers=ADMIN)
    # The path's scope is an enum of the schema: the usual 422, naming the parameter.
    assert wrong_scope.status_code == 422 and wrong_scope.json()["error"] == "invalid_request"
    assert wrong_scope.json()["detail"][0]["loc"] == ["path", "scope"]
    negative = await client.put("/admin/budgets/group/x", json={"limit_usd": -1}, headers=ADMIN)
    assert negative.status_code == 422
    portal_name = await client.put(
        "/admin/budgets/portal/other", json={"limit_usd": 1}, headers=ADMIN)
    assert portal_name.status_code == 422
