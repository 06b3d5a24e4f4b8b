"""Retries, fallbacks and circuits as the metrics show them (counts asserted exactly)."""

from __future__ import annotations

import asyncio
from typing import Any

from backend.tests.fakes.script import Script
from backend.tests.observability.scrape import scrape
from backend.tests.resilience.conftest import BACKUP_MODEL, IDS, Portal, body


async def test_each_retry_is_an_attempt_and_a_fallback_is_counted(portal: Portal) -> None:
    portal.fakes["openai"].script = Script(error_status=503)
    sent = await portal.client.post("/chat/send", json=body("openai_then_anthropic"))
    assert sent.status_code == 200 and sent.json()["provider"] == "anthropic"
    m = await scrape(portal.client)
    assert m.value(
        "portal_upstream_attempts_total", provider="openai", model="gpt-4o", result="unavailable"
    ) == 3
    assert m.value(
        "portal_upstream_attempts_total", provider="anthropic", model=BACKUP_MODEL, result="ok"
    ) == 1
    assert m.value("portal_upstream_attempts_total") == 4
    assert m.value(
        "portal_fallbacks_total", from_provider="openai", to_provider="anthropic"
    ) == 1
    # The request is labelled with the route that answered, and succeeded.
    assert m.value(
        "portal_requests_total", transport="send", specialist=IDS["openai_then_anthropic"],
        provider="anthropic", model=BACKUP_MODEL, outcome="ok",
    ) == 1
    assert m.value("portal_requests_total") == 1


async def test_the_circuit_gauge_follows_the_breaker(portal_factory: Any) -> None:
    portal: Portal = await portal_factory(
        breaker_failure_threshold=1, breaker_cool_down_seconds=0.5, retry_max_attempts=1
    )
    before = await scrape(portal.client)
    assert before.value("portal_circuit_open", provider="openai") == 0
    portal.fakes["openai"].script = Script(error_status=503)
    assert (await portal.client.post("/chat/send", json=body("openai"))).status_code == 503
    opened = await scrape(portal.client)
    assert opened.value("portal_circuit_open", provider="openai") == 1
    assert opened.value("portal_circuit_open", provider="anthropic") == 0
    refused = await portal.client.post("/chat/send", json=body("openai"))
    assert refused.json()["error"] == "upstream_circuit_open"
    portal.fakes["openai"].script = Script()
    await asyncio.sleep(0.55)
    assert (await portal.client.post("/chat/send", json=body("openai"))).status_code == 200
    closed = await scrape(portal.client)
    assert closed.value("portal_circuit_open", provider="openai") == 0
    assert closed.value("portal_requests_total", outcome="upstream_error") == 2
    # Refused by the open circuit: no attempt reached the upstream.
    assert closed.value("portal_upstream_attempts_total", provider="openai") == 2
