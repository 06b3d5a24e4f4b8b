"""A client that goes away cancels the upstream call at once; slow streams get keep-alives."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from httpx_sse import aconnect_sse

from backend.tests.fakes.script import Script
from backend.tests.resilience.conftest import Portal, body


async def until(check: Any, within: float) -> float:
    """Seconds until `check()` held; fail after `within`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, "not within the bound"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_leaving_mid_stream_closes_the_upstream_within_a_second(portal: Portal) -> None:
    fake = portal.fakes["openai"]
    fake.script = Script(chunks=["word "] * 100, chunk_delay=0.05)
    async with portal.client.stream("POST", "/chat/stream", json=body("openai")) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                break  # one chunk read; leaving the block hangs up mid-body
    await until(lambda: fake.disconnects == 1, within=1.0)
    assert fake.open_responses == 0
    (row,) = await portal.usage_rows("openai")
    assert (row["error_kind"], row["success"], row["streamed"]) == (
        "client_disconnected", False, True,
    )
    assert row["output_tokens"] > 0 and row["tokens_estimated"]


async def test_leaving_before_the_first_token_cancels_the_upstream(portal_factory: Any) -> None:
    portal: Portal = await portal_factory(first_token_timeout_seconds=30)
    portal.stall.hang_before_headers = 30
    for path in ("/chat/stream", "/chat/send"):
        waiting = asyncio.create_task(portal.client.post(path, json=body("stall")))
        await until(lambda: portal.stall.requests > len(portal.stall.hung_up), within=2.0)
        waiting.cancel()  # the client gives up while the portal waits upstream
        await asyncio.gather(waiting, return_exceptions=True)
        hung_up = len(portal.stall.hung_up)
        await until(lambda n=hung_up: len(portal.stall.hung_up) == n + 1, within=1.0)
    rows = await portal.usage_rows("stall", 2)
    assert [(r["error_kind"], r["streamed"]) for r in rows] == [
        ("client_disconnected", True), ("client_disconnected", False),
    ]


async def test_leaving_during_a_retry_backoff_stops_the_retries(portal_factory: Any) -> None:
    portal: Portal = await portal_factory(retry_base_delay_seconds=1.0, retry_max_delay_seconds=1)
    fake = portal.fakes["openai"]
    fake.script = Script(error_status=503)
    waiting = asyncio.create_task(portal.client.post("/chat/stream", json=body("openai")))
    await until(lambda: len(fake.requests) == 1, within=2.0)
    await asyncio.sleep(0.1)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    (row,) = await portal.usage_rows("openai")
    assert row["error_kind"] == "client_disconnected"
    await asyncio.sleep(1.2)  # past the moment the second attempt would have started
    assert len(fake.requests) == 1


async def test_a_slow_stream_gets_keep_alive_comments_and_no_buffering_headers(
    portal_factory: Any,
) -> None:
    portal: Portal = await portal_factory(sse_keepalive_seconds=0.1)
    portal.stall.stall_after, portal.stall.stall_seconds = 1, 0.6
    async with portal.client.stream("POST", "/chat/stream", json=body("stall")) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    first, rest = raw.split(b'"one"', 1)
    assert b": keep-alive\n\n" not in first  # none while text flows
    gap, _ = rest.split(b'" two"', 1)
    assert gap.count(b": keep-alive\n\n") >= 2  # the 0.6 s silence, 0.1 s intervals

    # An SSE client skips the comments: the same stream parses to the usual events.
    async with aconnect_sse(portal.client, "POST", "/chat/stream", json=body("stall")) as source:
        events = [(e.event, e.json()) async for e in source.aiter_sse()]
    assert [data["content"] for _, data in events] == ["one", " two", " three", ""]
    assert events[-1][1]["is_final"] is True
