"""Retries before the first token, end to end against the provider fakes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from httpx_sse import aconnect_sse

from backend.tests.fakes.script import Script
from backend.tests.resilience.conftest import MODELS, Portal, assert_no_keys, body

RETRYABLE = [
    ("openai", 429), ("openai", 500), ("openai", 502), ("openai", 503),
    ("anthropic", 429), ("anthropic", 500), ("anthropic", 529),
    ("google", 429), ("google", 500), ("google", 503),
]


async def stream_events(portal: Portal, payload: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every SSE event of one /chat/stream call, as (name, parsed data)."""
    async with aconnect_sse(portal.client, "POST", "/chat/stream", json=payload) as source:
        assert source.response.status_code == 200
        return [(event.event, event.json()) async for event in source.aiter_sse()]


@pytest.mark.parametrize(("provider", "status"), RETRYABLE)
async def test_each_retryable_failure_recovers_within_the_attempt_budget(
    portal: Portal, provider: str, status: int
) -> None:
    fake = portal.fakes[provider]
    fake.script = Script(error_status=status, fail_times=2)  # attempts: 3
    sent = await portal.client.post("/chat/send", json=body(provider))
    assert sent.status_code == 200, sent.text
    assert sent.json()["content"] == "Hello from the fake"
    assert len(fake.requests) == 3

    fake.failures_served = 0
    events = await stream_events(portal, body(provider))
    assert "".join(e["content"] for _, e in events) == "Hello from the fake"
    assert events[-1][1]["is_final"] is True and events[-1][1]["provider"] == provider
    assert len(fake.requests) == 6
    rows = await portal.usage_rows(provider, 2)
    assert all(r["success"] and r["error_kind"] is None for r in rows)
    assert [r["model"] for r in rows] == [MODELS[provider]] * 2


async def test_one_failure_too_many_is_reported_after_exactly_the_budgeted_attempts(
    portal: Portal,
) -> None:
    fake = portal.fakes["anthropic"]
    fake.script = Script(error_status=529, fail_times=3)
    response = await portal.client.post("/chat/send", json=body("anthropic"))
    assert response.status_code == 503
    assert response.json()["error"] == "upstream_unavailable"
    assert response.json()["provider"] == "anthropic"
    assert len(fake.requests) == 3
    (row,) = await portal.usage_rows("anthropic")
    assert not row["success"] and row["error_kind"] == "upstream_unavailable"


async def test_retry_after_is_honoured(portal: Portal) -> None:
    fake = portal.fakes["openai"]
    fake.script = Script(error_status=429, fail_times=1, retry_after="0.4")
    started = time.monotonic()
    response = await portal.client.post("/chat/send", json=body("openai"))
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4  # the backoff alone would be 0.01 s
    assert len(fake.requests) == 2


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
async def test_a_retry_after_over_the_cap_is_handed_to_the_client_at_once(
    portal: Portal, provider: str
) -> None:
    fake = portal.fakes[provider]
    fake.script = Script(error_status=429, retry_after="30")
    started = time.monotonic()
    response = await portal.client.post("/chat/stream", json=body(provider))
    assert time.monotonic() - started < 1.0
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert response.json()["error"] == "upstream_rate_limited"
    assert len(fake.requests) == 1


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_non_retryable_failures_fail_at_once(
    portal: Portal, provider: str, status: int
) -> None:
    fake = portal.fakes[provider]
    fake.script = Script(error_status=status)
    for path in ("/chat/send", "/chat/stream"):
        response = await portal.client.post(path, json=body(provider))
        assert response.status_code == 502, response.text
        assert response.json()["error"] in ("upstream_bad_request", "upstream_auth")
        assert response.json()["provider"] == provider
        assert_no_keys(response.text)
    assert len(fake.requests) == 2  # one per request: no retry
