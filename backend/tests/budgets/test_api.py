"""Budgets through the HTTP API, in one worker (in-process store): admission, the 402,
settlement however a request ends, unpriced models, /me/budget and the alert webhook."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from backend.database.engine import make_engine
from backend.tests.budgets.helpers import (
    OPENAI,
    PRICES,
    chat,
    exact_usage,
    headers,
    spent_by,
    worst_case_usd,
)
from backend.tests.chat.conftest import SPECIALISTS, Portal
from backend.tests.ratelimit.servers import burst
from backend.tests.support import silent_server
from backend.tests.usage.helpers import eventually

NANO = 1e-9


async def portal_with(portal_factory: Any, **settings: Any) -> Portal:
    """A portal with prices, generous rate limits and fast usage writes."""
    values: dict[str, Any] = {
        "price_overrides": PRICES, "rate_limit_requests": 100_000,
        "usage_flush_interval_seconds": 0.01, "retry_max_attempts": 1, **settings,
    }
    portal: Portal = await portal_factory(**values)
    return portal


async def me(portal: Portal, email: str) -> dict[str, Any]:
    """GET /me/budget as `email`, by scope."""
    response = await portal.client.get("/me/budget", headers={"x-user-email": email})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return {b["scope"]: b for b in body["budgets"]}


async def agree(portal: Portal, email: str, rows: int) -> float:
    """Wait for `rows` usage rows; the user's counters must equal their summed cost."""
    engine = make_engine(portal.settings.database_url)
    try:
        await eventually(lambda: _has(engine, email, rows))
        _, cost = await spent_by(engine, email)
    finally:
        await engine.dispose()
    mine = (await me(portal, email))["user"]
    assert mine["reserved_usd"] == 0
    assert mine["spent_usd"] == pytest.approx(cost, abs=rows * NANO + NANO)
    return cost


async def _has(engine: Any, email: str, rows: int) -> bool:
    return (await spent_by(engine, email))[0] >= rows


async def test_a_thousand_concurrent_first_requests_admit_exactly_what_fits(
    portal_factory: Any,
) -> None:
    limit = 10.5 * worst_case_usd()
    portal = await portal_with(portal_factory, budget_user_usd=limit)
    exact_usage(portal.fakes["openai"])  # each costs exactly what it reserved
    answers = await burst(
        [portal.url], 1000, body={"specialist_id": OPENAI, "message": "hello"},
        headers={"x-user-email": "new-hire@example.com"},
    )
    statuses = [status for status, _ in answers]
    assert statuses.count(200) == 10 and statuses.count(402) == 990
    assert len(portal.fakes["openai"].requests) == 10  # nothing else went upstream
    cost = await agree(portal, "new-hire@example.com", 10)
    assert cost <= limit


async def test_the_402_names_the_budget_and_the_token_is_still_spent(portal_factory: Any) -> None:
    portal = await portal_with(portal_factory, budget_user_usd=1.5 * worst_case_usd())
    exact_usage(portal.fakes["openai"])
    first = await portal.client.post("/chat/send", content=chat(), headers=headers("a@x.com"))
    assert first.status_code == 200
    remaining = float(first.headers["x-budget-remaining-usd"])
    assert remaining == pytest.approx(0.5 * worst_case_usd(), abs=1e-6)
    second = await portal.client.post("/chat/send", content=chat(), headers=headers("a@x.com"))
    assert second.status_code == 402
    body = second.json()
    assert body["error"] == "budget_exceeded" and body["scope"] == "user"
    assert body["name"] is None  # never the email
    assert body["limit_usd"] == pytest.approx(1.5 * worst_case_usd())
    assert body["spent_usd"] + body["reserved_usd"] == pytest.approx(worst_case_usd(), abs=1e-8)
    assert body["requested_usd"] == pytest.approx(worst_case_usd(), abs=1e-8)
    assert body["resets_at"].endswith("+00:00")
    assert "x-budget-remaining-usd" in second.headers
    assert int(second.headers["x-ratelimit-remaining"]) == int(
        first.headers["x-ratelimit-remaining"]) - 1
    assert len(portal.fakes["openai"].requests) == 1
    assert "a@x.com" not in second.text


async def test_every_way_in_is_refused_before_anything_goes_upstream(
    portal_factory: Any,
) -> None:
    portal = await portal_with(portal_factory, budget_user_usd=0.0)
    stream = await portal.client.post("/chat/stream", content=chat(), headers=headers("b@x.com"))
    assert stream.status_code == 402 and stream.json()["error"] == "budget_exceeded"
    v1 = await portal.client.post(
        "/v1/chat/completions", headers=headers("b@x.com"),
        content=orjson.dumps({"model": OPENAI, "messages": [{"role": "user", "content": "hi"}]}),
    )
    assert v1.status_code == 402
    error = v1.json()["error"]
    assert error["code"] == "budget_exceeded" and error["scope"] == "user"
    from websockets.asyncio.client import connect

    url = portal.url.replace("http", "ws") + "/chat/ws"
    async with connect(url, additional_headers={"x-user-email": "b@x.com"}) as socket:
        await socket.send(chat().decode())
        message = orjson.loads(await socket.recv())
    assert message["type"] == "error" and message["error"] == "budget_exceeded"
    assert message["status"] == 402
    assert portal.fakes["openai"].requests == []


async def test_reservations_are_settled_however_the_request_ends(portal_factory: Any) -> None:
    portal = await portal_with(portal_factory, budget_user_usd=1.0)
    fake = portal.fakes["openai"]
    email, rows = "c@x.com", 0
    ok = await portal.client.post("/chat/send", content=chat(), headers=headers(email))
    assert ok.status_code == 200
    rows += 1
    await agree(portal, email, rows)

    fake.script.error_status = 500  # an upstream error
    failed = await portal.client.post("/chat/send", content=chat(), headers=headers(email))
    assert failed.status_code == 503
    rows += 1
    await agree(portal, email, rows)

    fake.script.error_status = None
    fake.script.cut_after_chunks = 1  # a stream cut by the upstream
    cut = await portal.client.post("/chat/stream", content=chat(), headers=headers(email))
    assert cut.status_code == 200 and "upstream_stream_cut" in cut.text
    assert float(cut.headers["x-budget-remaining-usd"]) < 1.0  # on the SSE response too
    rows += 1
    await agree(portal, email, rows)

    fake.script.cut_after_chunks = None
    fake.script.chunk_delay = 0.5  # the client leaves mid-stream
    async with portal.client.stream(
        "POST", "/chat/stream", content=chat(), headers=headers(email)
    ) as response:
        async for _ in response.aiter_bytes():
            break
    rows += 1
    await agree(portal, email, rows)

    fake.script.chunk_delay = 0
    v1 = await portal.client.post(
        "/v1/chat/completions", headers=headers(email),
        content=orjson.dumps({"model": OPENAI, "messages": [{"role": "user", "content": "hi"}]}),
    )
    assert v1.status_code == 200 and "x-budget-remaining-usd" in v1.headers
    rows += 1
    total = await agree(portal, email, rows)
    assert total > 0


async def test_an_unpriced_model_is_refused_under_a_budget_unless_allowed(
    portal_factory: Any,
) -> None:
    compatible = SPECIALISTS["openai_compatible"]
    portal = await portal_with(portal_factory, budget_user_usd=5.0)
    refused = await portal.client.post(
        "/chat/send", content=chat(specialist=compatible), headers=headers("d@x.com"))
    assert refused.status_code == 402
    assert refused.json()["error"] == "budget_unpriced"
    assert "PRICE_OVERRIDES" in refused.json()["message"]
    anonymous = await portal.client.post(  # no budget applies to nobody: served
        "/chat/send", content=chat(specialist=compatible),
        headers={"content-type": "application/json"})
    assert anonymous.status_code == 200


async def test_budget_unpriced_allow_serves_unpriced_models(portal_factory: Any) -> None:
    portal = await portal_with(portal_factory, budget_user_usd=5.0, budget_unpriced="allow")
    answer = await portal.client.post(
        "/chat/send", content=chat(specialist=SPECIALISTS["openai_compatible"]),
        headers=headers("d@x.com"))
    assert answer.status_code == 200
    # The default output bound was sent upstream for a specialist that sets none.
    assert portal.fakes["openai_compatible"].requests[-1].json["max_tokens"] == 4096


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A local webhook receiver: its URL and the JSON bodies it got (the first one fails)."""
    got: list[dict[str, Any]] = []
    calls = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(status=500)  # the retry must deliver it anyway
        got.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook", got
    await runner.cleanup()


async def test_the_alert_fires_once_per_scope_and_period(
    portal_factory: Any, receiver: tuple[str, list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="backend.budgets.alerts")
    url, got = receiver
    portal = await portal_with(
        portal_factory, budget_user_usd=5.5 * worst_case_usd(), budget_alert_percent=10,
        budget_alert_webhook_url=url,
    )
    exact_usage(portal.fakes["openai"])
    for _ in range(5):  # the first crosses 10 %; the next four stay over it
        answer = await portal.client.post("/chat/send", content=chat(), headers=headers("e@x.com"))
        assert answer.status_code == 200
    await eventually(lambda: _async(bool(got)), within=10)
    await asyncio.sleep(1.0)  # time for any second alert to arrive (none must)
    assert len(got) == 1
    alert = got[0]
    assert alert["scope"] == "user" and alert["name"] != "e@x.com"
    assert alert["limit_usd"] == pytest.approx(5.5 * worst_case_usd())
    assert alert["spent_usd"] == pytest.approx(worst_case_usd(), abs=1e-8)
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("budget alert:")]
    assert len(logged) == 1 and logged[0].startswith(f"budget alert: user {alert['name']} spent")
    assert "e@x.com" not in caplog.text


async def test_a_dead_webhook_never_slows_a_chat(portal_factory: Any) -> None:
    portal = await portal_with(
        portal_factory, budget_user_usd=1.0, budget_alert_percent=0.001,
        budget_alert_webhook_url="http://127.0.0.1:9/nothing-listens",
    )
    for _ in range(3):
        answer = await portal.client.post("/chat/send", content=chat(), headers=headers("f@x.com"))
        assert answer.status_code == 200
        assert answer.elapsed.total_seconds() < 2


async def _async(value: bool) -> bool:
    return value


async def test_me_budget_lists_the_callers_budgets(portal_factory: Any) -> None:
    portal = await portal_with(
        portal_factory, budget_user_usd=2.0,
        budgets={"portal": 100.0, "groups": {"eng": 50.0}},
    )
    mine = await me(portal, "g@x.com")
    assert set(mine) == {"user", "portal"}
    assert mine["user"]["limit_usd"] == 2.0 and mine["user"]["remaining_usd"] == 2.0
    assert mine["portal"]["name"] == "portal" and mine["user"]["name"] is None
    off = await portal.client.get("/me/budget")  # anonymous: only the portal's
    assert [b["scope"] for b in off.json()["budgets"]] == ["portal"]


async def test_budgets_off_sends_no_header(portal_factory: Any) -> None:
    portal = await portal_with(portal_factory, budget_backend="off", budget_user_usd=0.0)
    answer = await portal.client.post("/chat/send", content=chat(), headers=headers("h@x.com"))
    assert answer.status_code == 200 and "x-budget-remaining-usd" not in answer.headers
    assert (await portal.client.get("/me/budget")).json() == {
        "enabled": False, "period": None, "budgets": []}


async def test_an_unreachable_redis_fails_closed_only_where_a_budget_exists(
    portal_factory: Any,
) -> None:
    dead = "redis://127.0.0.1:9/0"  # nothing listens: REDIS_URL set, Redis down
    unbudgeted = await portal_with(portal_factory, redis_url=dead)
    served = await unbudgeted.client.post(
        "/chat/send", content=chat(), headers=headers("k@x.com"))
    assert served.status_code == 200  # no budget anywhere: nothing to enforce
    budgeted = await portal_with(portal_factory, redis_url=dead, budget_user_usd=5.0)
    refused = await budgeted.client.post(
        "/chat/send", content=chat(), headers=headers("k@x.com"))
    assert refused.status_code == 503 and refused.json()["error"] == "budget_unavailable"
    assert len(budgeted.fakes["openai"].requests) == 0


async def test_a_hung_redis_refuses_a_budgeted_request_within_its_timeout(
    portal_factory: Any,
) -> None:
    # Redis accepts the connection and never answers: BUDGET_REDIS_TIMEOUT_SECONDS bounds
    # the wait, then the request fails closed (the default 1 s would take a second or more).
    async with silent_server() as port:
        portal = await portal_with(
            portal_factory, redis_url=f"redis://127.0.0.1:{port}/0", budget_user_usd=5.0,
            rate_limit_backend="memory", budget_redis_timeout_seconds=0.2,
        )
        started = time.perf_counter()
        refused = await portal.client.post(
            "/chat/send", content=chat(), headers=headers("hung@x.com"))
        waited = time.perf_counter() - started
    assert refused.status_code == 503 and refused.json()["error"] == "budget_unavailable"
    assert len(portal.fakes["openai"].requests) == 0
    assert 0.2 <= waited < 0.9
