"""Each metric moves as it should, on each transport: counts and sums, not just presence."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from backend.tests.budgets.helpers import PRICES, worst_case_usd
from backend.tests.chat.conftest import MODELS, SPECIALISTS
from backend.tests.fakes.script import Script
from backend.tests.observability.conftest import Portal
from backend.tests.observability.scrape import scrape
from backend.tests.transports.conftest import answer, ws_url

OPENAI = SPECIALISTS["openai"]
RESTRICTED = "77777777-7777-4777-8777-777777777777"
CHAT = {"specialist": OPENAI, "provider": "openai", "model": MODELS["openai"]}


def ask(specialist: str = OPENAI, message: str = "Hello?") -> dict[str, Any]:
    """A /chat body."""
    return {"specialist_id": specialist, "message": message}


async def test_send_counts_the_request_its_latency_tokens_cost_and_attempt(portal: Portal) -> None:
    # The upstream answers with a dated model name: the label stays the configured model.
    portal.fakes["openai"].script = Script(model="gpt-4o-2024-08-06", cached_input_tokens=3)
    started = time.perf_counter()
    answers = [(await portal.client.post("/chat/send", json=ask())).json() for _ in range(2)]
    elapsed = time.perf_counter() - started
    m = await scrape(portal.client)
    assert m.value("portal_requests_total", transport="send", outcome="ok", **CHAT) == 2
    assert m.value("portal_requests_total") == 2
    assert m.value("portal_request_duration_seconds_count", transport="send", **CHAT) == 2
    duration = m.value("portal_request_duration_seconds_sum", transport="send", **CHAT)
    assert duration == pytest.approx(sum(a["latency_ms"] for a in answers) / 1000, rel=1e-6)
    assert 0 < duration <= elapsed
    assert m.value("portal_tokens_total", type="input", **CHAT) == 22
    assert m.value("portal_tokens_total", type="output", **CHAT) == 14
    assert m.value("portal_tokens_total", type="cached_input", **CHAT) == 6
    cost = sum(a["estimated_cost_usd"] for a in answers)
    assert cost > 0
    assert m.value("portal_cost_usd_total", **CHAT) == pytest.approx(cost)
    assert m.value(
        "portal_upstream_attempts_total", provider="openai", model="gpt-4o", result="ok"
    ) == 2
    assert m.value("portal_time_to_first_token_seconds_count") == 0  # not a stream
    assert m.value("portal_streams_in_flight") == 0
    assert all(labels["model"] != "gpt-4o-2024-08-06" for labels in m.labels(
        "portal_requests_total"
    ))


async def test_a_stream_counts_its_first_token_and_is_in_flight_only_while_it_runs(
    portal: Portal,
) -> None:
    portal.fakes["openai"].script = Script(chunks=["a", "b", "c"], chunk_delay=0.2)
    async with aconnect_sse(portal.client, "POST", "/chat/stream", json=ask()) as source:
        events = source.aiter_sse()
        first = await anext(events)
        assert first.event == "message"
        during = await scrape(portal.client)
        rest = [event async for event in events]
    assert during.value("portal_streams_in_flight") == 1
    final = rest[-1].json()
    m = await scrape(portal.client)
    assert m.value("portal_streams_in_flight") == 0
    assert m.value("portal_requests_total", transport="stream", outcome="ok", **CHAT) == 1
    assert m.value("portal_time_to_first_token_seconds_count", transport="stream", **CHAT) == 1
    ttft = m.value("portal_time_to_first_token_seconds_sum", transport="stream", **CHAT)
    total = m.value("portal_request_duration_seconds_sum", transport="stream", **CHAT)
    # The first chunk comes 0.2 s in, the last after 0.6 s: TTFT is well before the end.
    assert 0.15 < ttft < total
    assert total == pytest.approx(final["latency_ms"] / 1000, rel=1e-6)
    assert m.value("portal_tokens_total", type="output", **CHAT) == final["output_tokens"]


async def test_websocket_turns_count_as_ws_with_their_refusals(portal: Portal) -> None:
    async with connect(ws_url(portal)) as ws:
        await ws.send(orjson.dumps(ask()).decode())
        _, final = await answer(ws)
        assert final["is_final"]
        await ws.send("{not json")
        _, error = await answer(ws)
        assert error["type"] == "error"
        await ws.send(orjson.dumps(ask("99999999-9999-4999-8999-999999999999")).decode())
        _, missing = await answer(ws)
        assert missing["error"] == "specialist_not_found"
    m = await scrape(portal.client)
    assert m.value("portal_requests_total", transport="ws", outcome="ok", **CHAT) == 1
    assert m.value(
        "portal_requests_total", transport="ws", outcome="client_error", specialist="none",
        provider="none", model="none",
    ) == 2
    assert m.value("portal_time_to_first_token_seconds_count", transport="ws") == 1
    assert m.value("portal_request_duration_seconds_count", transport="ws") == 1
    assert m.value("portal_requests_total") == 3


async def test_the_openai_api_counts_as_v1_streamed_or_not(portal: Portal) -> None:
    request = {"model": OPENAI, "messages": [{"role": "user", "content": "Hi"}]}
    whole = await portal.client.post("/v1/chat/completions", json=request)
    assert whole.status_code == 200
    async with portal.client.stream(
        "POST", "/v1/chat/completions", json={**request, "stream": True}
    ) as streamed:
        body = b"".join([chunk async for chunk in streamed.aiter_bytes()])
    assert body.endswith(b"data: [DONE]\n\n")
    unknown = await portal.client.post("/v1/chat/completions", json={**request, "model": "x"})
    assert unknown.status_code == 404
    m = await scrape(portal.client)
    assert m.value("portal_requests_total", transport="v1", outcome="ok", **CHAT) == 2
    assert m.value("portal_time_to_first_token_seconds_count", transport="v1") == 1
    assert m.value("portal_requests_total", transport="v1", outcome="client_error") == 1
    assert m.value("portal_tokens_total", type="input", **CHAT) == 22


async def test_refusals_before_the_chat_service_count_once_with_no_upstream(
    portal_factory: Any,
) -> None:
    portal: Portal = await portal_factory(rate_limit_requests=4)
    assert (await portal.client.post("/chat/send", json={"message": 1})).status_code == 422
    assert (await portal.client.post("/chat/send", json=ask("nope"))).status_code == 404
    too_big = ask(message="x" * 40_000)
    assert (await portal.client.post("/chat/stream", json=too_big)).status_code == 413
    assert (await portal.client.post("/chat/send", json=ask())).status_code == 200
    assert (await portal.client.post("/chat/send", json=ask())).status_code == 429
    m = await scrape(portal.client)
    refused = {"specialist": "none", "provider": "none", "model": "none"}
    assert m.value("portal_requests_total", transport="send", outcome="client_error",
                   **refused) == 2
    # Over the size limit, but its specialist was known by then: counted under it.
    assert m.value("portal_requests_total", transport="stream", outcome="client_error",
                   **{**refused, "specialist": OPENAI}) == 1
    assert m.value("portal_requests_total", transport="send", outcome="rate_limited") == 1
    assert m.value("portal_requests_total", transport="send", outcome="ok") == 1
    assert m.value("portal_requests_total") == 5
    assert m.value("portal_rate_limited_total", scope="ip") == 1
    assert m.value("portal_rate_limited_total", scope="user") == 0
    assert m.value("portal_upstream_attempts_total") == 1
    assert m.value("portal_request_duration_seconds_count") == 1  # only what ran


async def test_an_upstream_failure_and_a_timeout_are_their_own_outcomes(
    portal_factory: Any,
) -> None:
    portal: Portal = await portal_factory(
        retry_max_attempts=1, first_token_timeout_seconds=0.3, openai_timeout_seconds=0.3,
    )
    portal.fakes["openai"].script = Script(error_status=500)
    assert (await portal.client.post("/chat/send", json=ask())).status_code == 503
    portal.fakes["openai"].script = Script(first_byte_delay=2.0)
    async with aconnect_sse(portal.client, "POST", "/chat/stream", json=ask()) as source:
        assert source.response.status_code == 504
    m = await scrape(portal.client)
    assert m.value("portal_requests_total", transport="send", outcome="upstream_error",
                   **CHAT) == 1
    assert m.value("portal_requests_total", transport="stream", outcome="timeout", **CHAT) == 1
    assert m.value("portal_upstream_attempts_total", result="unavailable") == 1
    assert m.value("portal_upstream_attempts_total", result="timeout") == 1
    assert m.value("portal_time_to_first_token_seconds_count") == 0
    assert m.value("portal_streams_in_flight") == 0


async def test_a_client_leaving_mid_stream_is_client_disconnected(portal: Portal) -> None:
    fake = portal.fakes["openai"]
    fake.script = Script(chunks=["word "] * 100, chunk_delay=0.05)
    async with portal.client.stream("POST", "/chat/stream", json=ask()) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                break
    deadline = time.monotonic() + 5
    while True:
        m = await scrape(portal.client)
        if m.value("portal_requests_total") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert m.value("portal_requests_total", transport="stream",
                   outcome="client_disconnected", **CHAT) == 1
    assert m.value("portal_requests_total") == 1
    assert m.value("portal_streams_in_flight") == 0
    assert m.value("portal_time_to_first_token_seconds_count") == 1


async def records_reach(portal: Portal, result: str, count: int) -> Any:
    """The scrape once the usage writer has reported `count` records with `result`."""
    deadline = time.monotonic() + 10
    while True:
        m = await scrape(portal.client)
        if m.value("portal_usage_records_total", result=result) >= count:
            return m
        assert time.monotonic() < deadline, f"the writer did not report {count} {result}"
        await asyncio.sleep(0.05)


async def test_the_usage_writer_counts_what_it_wrote(portal: Portal) -> None:
    for _ in range(3):
        assert (await portal.client.post("/chat/send", json=ask())).status_code == 200
    m = await records_reach(portal, "written", 3)
    assert m.value("portal_usage_records_total", result="written") == 3
    assert m.value("portal_usage_records_total", result="spooled") == 0
    assert m.value("portal_usage_batch_seconds_count") >= 1
    assert m.value("portal_usage_batch_seconds_sum") > 0
    assert m.value("portal_usage_queue_depth") == 0
    assert m.value("portal_usage_spool_records") == 0


async def test_metrics_token_guards_the_endpoint_and_off_means_404(portal_factory: Any) -> None:
    token = "metrics-token-0123456789"
    portal: Portal = await portal_factory(metrics_token=token)
    assert (await portal.client.get("/metrics")).status_code == 401
    wrong = await portal.client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    assert token not in wrong.text
    m = await scrape(portal.client, Authorization=f"Bearer {token}")
    assert "portal_requests" in m.families
    off: Portal = await portal_factory(metrics_enabled=False)
    assert (await off.client.get("/metrics")).status_code == 404
    assert (await off.client.post("/chat/send", json=ask())).status_code == 200


async def test_metrics_token_guesses_are_throttled_with_the_admin_ones(
    portal_factory: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    token, admin = "metrics-token-0123456789", "admin-token-0123456789"
    portal: Portal = await portal_factory(
        metrics_token=token, admin_token=admin, admin_auth_max_failures=3,
    )
    right = {"Authorization": f"Bearer {token}"}
    assert (await portal.client.get("/metrics", headers=right)).status_code == 200
    statuses = [
        (await portal.client.get("/metrics", headers={"Authorization": f"Bearer guess{i}"}))
        .status_code for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    refused = await portal.client.get("/metrics", headers=right)  # even the right token
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert refused.json()["error"] == "auth_throttled"
    # One budget of guesses per client for both secrets, not one each.
    admin_call = await portal.client.get(
        "/usage/status", headers={"Authorization": f"Bearer {admin}"}
    )
    assert admin_call.status_code == 429
    failed = [r.getMessage() for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(failed) == 3 and all(m.startswith("metrics authentication") for m in failed)
    assert not any("guess" in m for m in failed)  # never the value tried


async def test_labels_stay_inside_the_configured_sets(portal: Portal) -> None:
    await portal.client.post("/chat/send", json=ask("not-a-specialist"))
    await portal.client.post("/chat/send", json=ask(), headers={"X-User-Email": "a@b.example"})
    m = await scrape(portal.client)
    allowed_specialists = {*SPECIALISTS.values(), "none", "other"}
    for labels in m.labels("portal_requests_total"):
        assert labels["specialist"] in allowed_specialists
        assert labels["model"] in {*MODELS.values(), "none", "other"}
    text = (await portal.client.get("/metrics")).text
    assert "a@b.example" not in text and "not-a-specialist" not in text


async def test_budget_refusals_are_budget_exceeded_under_their_specialist(
    portal_factory: Any,
) -> None:
    portal: Portal = await portal_factory(
        price_overrides=PRICES, budget_user_usd=worst_case_usd() / 2
    )
    ann = {"X-User-Email": "ann@example.com"}  # a user budget needs a user
    refused = await portal.client.post("/chat/send", json=ask(), headers=ann)
    assert refused.status_code == 402
    m = await scrape(portal.client)
    assert m.value("portal_requests_total", transport="send", outcome="budget_exceeded",
                   specialist=OPENAI) == 1
    assert m.value("portal_upstream_attempts_total") == 0


async def test_a_budget_store_that_cannot_answer_is_an_internal_error_not_a_spent_budget(
    portal_factory: Any,
) -> None:
    portal: Portal = await portal_factory(
        price_overrides=PRICES, budget_user_usd=5.0, redis_url="redis://127.0.0.1:9/0",
    )
    refused = await portal.client.post(
        "/chat/send", json=ask(), headers={"X-User-Email": "ann@example.com"}
    )
    assert refused.status_code == 503
    assert refused.json()["error"] == "budget_unavailable"
    m = await scrape(portal.client)
    assert m.value("portal_requests_total", outcome="internal_error", specialist=OPENAI) == 1
    assert m.value("portal_requests_total", outcome="budget_exceeded") == 0


async def test_a_restricted_specialist_refused_is_forbidden(
    portal_factory: Any, tmp_path: Path
) -> None:
    first: Portal = await portal_factory()
    data = yaml.safe_load(first.settings.specialists_file.read_text())
    data["specialists"].append({"id": RESTRICTED, "name": "Risk", "provider": "openai",
                                "model": MODELS["openai"], "allowed_groups": ["risk"]})
    specialists = tmp_path / "restricted.yaml"
    specialists.write_text(yaml.safe_dump(data))
    portal: Portal = await portal_factory(
        auth_mode="header", trusted_frontends=["127.0.0.0/8"], specialists_file=specialists,
        database_url=f"sqlite:///{tmp_path / 'restricted.db'}",
    )
    staff = {"X-User-Email": "bob@example.com", "X-User-Groups": "staff"}
    refused = await portal.client.post("/chat/send", json=ask(RESTRICTED), headers=staff)
    assert refused.status_code == 403
    m = await scrape(portal.client)
    assert m.value("portal_requests_total", outcome="forbidden", specialist=RESTRICTED) == 1
    assert m.value("portal_upstream_attempts_total") == 0


async def test_a_specialist_created_at_runtime_is_counted_under_its_own_id(
    portal_factory: Any, tmp_path: Path
) -> None:
    admin = {"X-User-Email": "alice@example.com", "X-User-Groups": "portal-admins"}
    portal: Portal = await portal_factory(
        auth_mode="header", trusted_frontends=["127.0.0.0/8"], admin_groups=["portal-admins"],
        specialist_approval="none", database_url=f"sqlite:///{tmp_path / 'runtime.db'}",
    )
    created = await portal.client.post("/admin/specialists", headers=admin, json={
        "name": "New desk", "provider": "demo", "model": "demo-echo", "reason": "a new desk",
    })
    assert created.status_code in (200, 201), created.text
    new_id = created.json()["id"]
    answer_ = await portal.client.post("/chat/send", headers=admin, json=ask(new_id))
    assert answer_.status_code == 200, answer_.text
    m = await scrape(portal.client)
    assert m.value("portal_requests_total", specialist=new_id, model="demo-echo",
                   outcome="ok") == 1
    assert m.value("portal_requests_total", specialist="other") == 0


async def test_user_and_specialist_limits_count_under_their_own_scope(
    portal_factory: Any,
) -> None:
    portal: Portal = await portal_factory(
        rate_limit_user_requests=1,
        rate_limit_specialists={SPECIALISTS["anthropic"]: {"requests": 1}},
    )
    ann = {"X-User-Email": "ann@example.com"}
    assert (await portal.client.post("/chat/send", json=ask(), headers=ann)).status_code == 200
    assert (await portal.client.post("/chat/send", json=ask(), headers=ann)).status_code == 429
    anthropic = ask(SPECIALISTS["anthropic"])
    assert (await portal.client.post("/chat/send", json=anthropic)).status_code == 200
    assert (await portal.client.post("/chat/send", json=anthropic)).status_code == 429
    m = await scrape(portal.client)
    assert m.value("portal_rate_limited_total", scope="user") == 1
    assert m.value("portal_rate_limited_total", scope="specialist") == 1
    assert m.value("portal_rate_limited_total", scope="ip") == 0
    assert m.value("portal_requests_total", outcome="rate_limited") == 2


async def test_records_spooled_while_the_database_is_away_are_counted(
    portal_factory: Any,
) -> None:
    portal: Portal = await portal_factory(
        database_url="postgresql://127.0.0.1:9/nowhere", auto_migrate=None,
        database_connect_timeout_seconds=0.3,
    )
    for _ in range(2):
        assert (await portal.client.post("/chat/send", json=ask())).status_code == 200
    m = await records_reach(portal, "spooled", 2)
    assert m.value("portal_usage_records_total", result="spooled") == 2
    assert m.value("portal_usage_records_total", result="written") == 0
    assert m.value("portal_usage_spool_records") == 2
