"""Hung, slow, stalled and cut upstreams end within their bounds, and stall no one else."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from httpx_sse import aconnect_sse

from backend.tests.fakes.script import Script
from backend.tests.resilience.conftest import Portal, assert_no_keys, body

SLACK = 0.6  # scheduling, connection set-up and the app's own work, on a loaded CI runner


async def stream_events(portal: Portal, payload: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every SSE event of one /chat/stream call that started with 200."""
    async with aconnect_sse(portal.client, "POST", "/chat/stream", json=payload) as source:
        assert source.response.status_code == 200
        return [(event.event, event.json()) async for event in source.aiter_sse()]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
async def test_a_hung_upstream_is_504_within_the_first_token_bound(
    portal_factory: Any, provider: str
) -> None:
    portal: Portal = await portal_factory(
        first_token_timeout_seconds=0.4, provider_timeouts={provider: {"total": 0.5}}
    )
    portal.fakes[provider].script = Script(first_byte_delay=5)
    for path, bound in (("/chat/stream", 0.4), ("/chat/send", 0.5)):
        started = time.monotonic()
        response = await portal.client.post(path, json=body(provider))
        assert time.monotonic() - started < bound + SLACK
        assert response.status_code == 504
        assert (response.json()["error"], response.json()["provider"]) == (
            "upstream_timeout", provider,
        )
        assert_no_keys(response.text)
    assert len(portal.fakes[provider].requests) == 2  # a timeout is not retried in place
    rows = await portal.usage_rows(provider, 2)
    assert [r["error_kind"] for r in rows] == ["upstream_timeout"] * 2


async def test_pings_without_text_still_hit_the_first_token_bound(portal_factory: Any) -> None:
    # Anthropic's fake sends message_start and a ping at once, then waits before any text:
    # the connection is busy, but no token comes.
    portal: Portal = await portal_factory(
        first_token_timeout_seconds=0.3, stream_idle_timeout_seconds=5
    )
    portal.fakes["anthropic"].script = Script(chunk_delay=3)
    started = time.monotonic()
    response = await portal.client.post("/chat/stream", json=body("anthropic"))
    assert time.monotonic() - started < 0.3 + SLACK
    assert response.status_code == 504
    assert "no text within 0.3 s" in response.json()["message"]


async def test_a_stream_that_stalls_mid_way_ends_with_a_timeout_event(
    portal_factory: Any,
) -> None:
    portal: Portal = await portal_factory(stream_idle_timeout_seconds=0.4)
    portal.stall.stall_after, portal.stall.stall_seconds = 2, 10
    started = time.monotonic()
    events = await stream_events(portal, body("stall"))
    assert time.monotonic() - started < 0.4 + SLACK
    assert [name for name, _ in events] == ["message", "message", "error"]
    assert [data["content"] for _, data in events[:2]] == ["one", " two"]
    assert (events[-1][1]["error"], events[-1][1]["provider"]) == (
        "upstream_timeout", "openai_compatible",
    )
    await asyncio.sleep(0.1)
    assert len(portal.stall.hung_up) == 1  # the upstream connection was closed, not left open
    (row,) = await portal.usage_rows("stall")
    assert row["error_kind"] == "upstream_timeout" and row["streamed"]


async def test_the_total_cap_ends_a_stream_that_keeps_trickling(portal_factory: Any) -> None:
    portal: Portal = await portal_factory(provider_timeouts={"openai": {"total": 0.6}})
    portal.fakes["openai"].script = Script(chunks=["tick "] * 100, chunk_delay=0.05)
    started = time.monotonic()
    events = await stream_events(portal, body("openai"))
    assert time.monotonic() - started < 0.6 + SLACK
    assert events[-1][0] == "error" and events[-1][1]["error"] == "upstream_timeout"
    assert 3 < len(events) < 20


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
async def test_a_cut_stream_ends_with_an_error_event_at_once(
    portal: Portal, provider: str
) -> None:
    portal.fakes[provider].script = Script(cut_after_chunks=1)
    started = time.monotonic()
    events = await stream_events(portal, body(provider))
    assert time.monotonic() - started < SLACK
    assert [name for name, _ in events] == ["message", "error"]
    assert events[-1][1]["error"] == "upstream_stream_cut"


async def test_a_stalled_upstream_does_not_slow_other_requests(portal_factory: Any) -> None:
    portal: Portal = await portal_factory(stream_idle_timeout_seconds=10)
    portal.stall.stall_after, portal.stall.stall_seconds = 1, 3
    stalled = asyncio.create_task(stream_events(portal, body("stall")))
    for _ in range(200):
        if portal.stall.requests:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # the stalled stream has sent its first chunk and gone quiet
    assert portal.stall.requests == 1
    started = time.monotonic()
    answers = await asyncio.gather(
        *(portal.client.post("/chat/send", json=body("openai")) for _ in range(20)),
        *(stream_events(portal, body("google")) for _ in range(5)),
    )
    assert time.monotonic() - started < 1.5
    assert all(a.status_code == 200 for a in answers[:20])
    assert not stalled.done()
    stalled.cancel()
    await asyncio.gather(stalled, return_exceptions=True)
