"""Fallbacks and the circuit breaker, end to end: who answered, and what the record says."""

from __future__ import annotations

import asyncio
from typing import Any

from httpx_sse import aconnect_sse

from backend.tests.fakes.script import Script
from backend.tests.resilience.conftest import (
    BACKUP_MODEL,
    IDS,
    MODELS,
    PROMPT,
    Portal,
    assert_no_keys,
    body,
)


async def final_event(portal: Portal, payload: dict[str, Any]) -> dict[str, Any]:
    """The last event of a /chat/stream call."""
    async with aconnect_sse(portal.client, "POST", "/chat/stream", json=payload) as source:
        assert source.response.status_code == 200
        events = [event async for event in source.aiter_sse()]
    assert events[-1].event == "message"
    data: dict[str, Any] = events[-1].json()
    return data


async def test_a_provider_fallback_answers_and_is_recorded_truthfully(portal: Portal) -> None:
    portal.fakes["openai"].script = Script(error_status=503)
    sent = await portal.client.post("/chat/send", json=body("openai_then_anthropic"))
    assert sent.status_code == 200, sent.text
    assert (sent.json()["provider"], sent.json()["model"]) == ("anthropic", BACKUP_MODEL)
    assert sent.json()["specialist_id"] == IDS["openai_then_anthropic"]
    final = await final_event(portal, body("openai_then_anthropic"))
    assert (final["provider"], final["model"]) == ("anthropic", BACKUP_MODEL)
    assert len(portal.fakes["openai"].requests) == 6  # three attempts per request
    assert [r.json["model"] for r in portal.fakes["anthropic"].requests] == [BACKUP_MODEL] * 2
    rows = await portal.usage_rows("openai_then_anthropic", 2)
    for row in rows:
        assert (row["provider"], row["model"], row["success"]) == ("anthropic", BACKUP_MODEL, True)
        assert row["error_kind"] is None and row["input_tokens"] == 11


async def test_a_specialist_fallback_uses_its_route_but_keeps_the_asked_specialists_prompt(
    portal: Portal,
) -> None:
    portal.fakes["anthropic"].script = Script(error_status=529)
    sent = await portal.client.post("/chat/send", json=body("anthropic_then_google"))
    assert sent.status_code == 200, sent.text
    assert (sent.json()["provider"], sent.json()["model"]) == ("google", MODELS["google"])
    (request,) = portal.fakes["google"].requests
    assert request.json["systemInstruction"]["parts"][0]["text"] == PROMPT
    (row,) = await portal.usage_rows("anthropic_then_google")
    assert (row["provider"], row["model"]) == ("google", MODELS["google"])


async def test_connection_errors_are_retried_then_fall_back(portal: Portal) -> None:
    final = await final_event(portal, body("refused_then_openai"))
    assert (final["provider"], final["model"]) == ("openai", MODELS["openai"])
    (row,) = await portal.usage_rows("refused_then_openai")
    assert row["provider"] == "openai" and row["success"]


async def test_a_non_retryable_failure_does_not_fall_back(portal: Portal) -> None:
    portal.fakes["openai"].script = Script(error_status=400)
    response = await portal.client.post("/chat/send", json=body("openai_then_anthropic"))
    assert response.status_code == 502
    assert len(portal.fakes["openai"].requests) == 1
    assert not portal.fakes["anthropic"].requests


async def test_when_every_target_fails_the_last_failure_is_reported_and_recorded(
    portal: Portal,
) -> None:
    portal.fakes["openai"].script = Script(error_status=500)
    portal.fakes["anthropic"].script = Script(error_status=529)
    response = await portal.client.post("/chat/stream", json=body("openai_then_anthropic"))
    assert response.status_code == 503
    assert (response.json()["error"], response.json()["provider"]) == (
        "upstream_unavailable", "anthropic",
    )
    (row,) = await portal.usage_rows("openai_then_anthropic")
    assert (row["provider"], row["model"], row["success"]) == ("anthropic", BACKUP_MODEL, False)
    assert row["error_kind"] == "upstream_unavailable" and row["streamed"]


async def test_the_breaker_opens_fails_fast_then_a_probe_closes_it(portal_factory: Any) -> None:
    portal: Portal = await portal_factory(
        breaker_failure_threshold=2, breaker_cool_down_seconds=0.5, retry_max_attempts=2
    )
    fake = portal.fakes["openai"]
    fake.script = Script(error_status=503)
    for _ in range(2):
        failed = await portal.client.post("/chat/send", json=body("openai"))
        assert failed.json()["error"] == "upstream_unavailable"
    assert len(fake.requests) == 4
    for path in ("/chat/send", "/chat/stream"):
        refused = await portal.client.post(path, json=body("openai"))
        assert refused.status_code == 503
        assert refused.json()["error"] == "upstream_circuit_open"
        assert refused.json()["provider"] == "openai"
        assert refused.headers["retry-after"] == "1"
        assert_no_keys(refused.text)
    assert len(fake.requests) == 4  # nothing reached the upstream while open
    # While open, a specialist with a fallback is answered by it at once.
    rerouted = await portal.client.post("/chat/send", json=body("openai_then_anthropic"))
    assert rerouted.json()["provider"] == "anthropic"
    fake.script = Script()  # the provider recovers
    await asyncio.sleep(0.55)
    probe = await portal.client.post("/chat/send", json=body("openai"))
    assert probe.status_code == 200 and probe.json()["provider"] == "openai"
    after = await portal.client.post("/chat/send", json=body("openai"))
    assert after.status_code == 200
    rows = await portal.usage_rows("openai", 6)
    assert [r["error_kind"] for r in rows] == [
        "upstream_unavailable", "upstream_unavailable", "upstream_circuit_open",
        "upstream_circuit_open", None, None,
    ]
