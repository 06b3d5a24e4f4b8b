"""Upstream faults the adapters used to miss, through the real portal: what the client gets,
how often the fake was called, and what the usage row says (tokens, cost, `billed`)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from httpx_sse import aconnect_sse

from backend.tests.fakes.google_fake import GoogleScript
from backend.tests.fakes.script import Script
from backend.tests.resilience.conftest import Portal, body

SLACK = 1.5  # seconds of scheduling slack on a shared machine


async def test_a_200_carrying_an_error_is_retried_then_fails_unbilled(portal: Portal) -> None:
    portal.fakes["openai"].script = Script(error_with_200=True, error_message="proxy gave up")
    response = await portal.client.post("/chat/send", json=body("openai"))
    assert response.status_code == 503
    assert response.json()["error"] == "upstream_unavailable"
    assert len(portal.fakes["openai"].requests) == 3  # retried like any 5xx
    (row,) = await portal.usage_rows("openai")
    assert (row["success"], row["error_kind"]) == (False, "upstream_unavailable")
    assert (row["input_tokens"], row["output_tokens"], row["estimated_cost_usd"]) == (0, 0, 0.0)
    assert row["billed"] is False and row["tokens_estimated"] is False


async def test_a_200_carrying_an_error_falls_over_to_the_fallback(portal: Portal) -> None:
    portal.fakes["openai"].script = Script(error_with_200=True)
    response = await portal.client.post("/chat/send", json=body("openai_then_anthropic"))
    assert response.status_code == 200 and response.json()["provider"] == "anthropic"
    assert response.json()["finish_reason"] == "stop"


@pytest.mark.parametrize("streaming", [False, True], ids=["send", "stream"])
async def test_a_529_retry_after_is_waited_for_and_passed_on(
    portal_factory: Any, streaming: bool
) -> None:
    portal: Portal = await portal_factory(retry_after_cap_seconds=5.0, retry_max_attempts=2)
    fake = portal.fakes["anthropic"]
    fake.script = Script(error_status=529, retry_after="1", error_message="Overloaded")
    path = "/chat/stream" if streaming else "/chat/send"
    started = time.monotonic()
    response = await portal.client.post(path, json=body("anthropic"))
    elapsed = time.monotonic() - started
    assert len(fake.requests) == 2 and 1.0 <= elapsed < 1.0 + SLACK  # not 0.26 s
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    (row,) = await portal.usage_rows("anthropic")
    assert row["billed"] is False and row["estimated_cost_usd"] == 0.0


async def test_a_gemini_429_outside_the_sse_framing_is_a_rate_limit(portal: Portal) -> None:
    portal.fakes["google"].script = GoogleScript(
        stream_error_after=0, status_outside_sse=True, stream_error_code=429, retry_after="30",
        error_message="Resource has been exhausted (e.g. check quota).",
    )
    response = await portal.client.post("/chat/stream", json=body("google"))
    # The hint is over the retry-after cap: no retries, the client gets it at once.
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert response.json()["error"] == "upstream_rate_limited"
    assert len(portal.fakes["google"].requests) == 1
    (row,) = await portal.usage_rows("google")
    assert row["billed"] is False and row["input_tokens"] == 0


async def test_a_gemini_429_outside_the_sse_framing_within_the_cap_is_waited_for(
    portal_factory: Any,
) -> None:
    portal: Portal = await portal_factory(retry_after_cap_seconds=5.0, retry_max_attempts=2)
    fake = portal.fakes["google"]
    # The hint travels only in the Status's RetryInfo detail ("1s"): no header on a 200.
    fake.script = GoogleScript(
        stream_error_after=0, status_outside_sse=True, stream_error_code=429, retry_after="1",
        error_message="Resource has been exhausted (e.g. check quota).",
    )
    started = time.monotonic()
    response = await portal.client.post("/chat/stream", json=body("google"))
    elapsed = time.monotonic() - started
    assert len(fake.requests) == 2 and 1.0 <= elapsed < 1.0 + SLACK  # not the 0.01 s backoff
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["error"] == "upstream_rate_limited"
    (row,) = await portal.usage_rows("google")
    assert (row["billed"], row["input_tokens"], row["estimated_cost_usd"]) == (False, 0, 0.0)


async def test_a_gemini_status_mid_stream_ends_with_its_error_event(portal: Portal) -> None:
    portal.fakes["google"].script = GoogleScript(
        stream_error_after=1, status_outside_sse=True, stream_error_code=503,
    )
    async with aconnect_sse(
        portal.client, "POST", "/chat/stream", json=body("google")
    ) as source:
        events = [(e.event, e.json()) async for e in source.aiter_sse()]
    assert [name for name, _ in events] == ["message", "error"]
    assert events[-1][1]["error"] == "upstream_unavailable"  # not upstream_stream_cut
    (row,) = await portal.usage_rows("google")
    # The running usageMetadata of the first frame is the provider's count: kept.
    assert row["tokens_estimated"] is False and row["input_tokens"] == 11


async def test_partial_anthropic_counts_are_kept_when_a_stream_fails(portal: Portal) -> None:
    portal.fakes["anthropic"].script = Script(stream_error_after=2, input_tokens=500)
    async with aconnect_sse(
        portal.client, "POST", "/chat/stream", json=body("anthropic")
    ) as source:
        events = [(e.event, e.json()) async for e in source.aiter_sse()]
    assert events[-1][0] == "error"
    (row,) = await portal.usage_rows("anthropic")
    assert row["input_tokens"] == 500 and row["tokens_estimated"] is False  # message_start's
    assert row["billed"] is True and row["estimated_cost_usd"] > 0


async def test_gemini_continuation_comes_back_whole(portal: Portal) -> None:
    portal.fakes["google"].script = GoogleScript(chunks=["Part two."], continuation_hops=1)
    response = await portal.client.post("/chat/send", json=body("google"))
    assert response.json()["content"] == "Part one. Part two."
    assert response.json()["input_tokens"] == 22  # two hops, each billed


async def test_a_silent_reasoning_model_is_not_held_to_the_first_token_bound(
    portal_factory: Any,
) -> None:
    portal: Portal = await portal_factory(
        first_token_timeout_seconds=0.3, stream_idle_timeout_seconds=5
    )
    # gemini-2.5-flash thinks before its first byte; gpt-4o does not get that grace.
    portal.fakes["google"].script = Script(first_byte_delay=1.0)
    portal.fakes["openai"].script = Script(first_byte_delay=1.0)
    thinking = await portal.client.post("/chat/stream", json=body("google"))
    plain = await portal.client.post("/chat/stream", json=body("openai"))
    assert thinking.status_code == 200 and '"finish_reason":"stop"' in thinking.text
    assert plain.status_code == 504


async def test_thinking_counts_as_life_for_the_first_token_bound(portal_factory: Any) -> None:
    # Anthropic's thinking block comes at once, the text a second later: past the bound.
    portal: Portal = await portal_factory(
        first_token_timeout_seconds=0.3, stream_idle_timeout_seconds=5
    )
    portal.fakes["anthropic"].script = Script(thinking=["Hmm. "], chunk_delay=1.0)
    async with aconnect_sse(
        portal.client, "POST", "/chat/stream", json=body("anthropic")
    ) as source:
        assert source.response.status_code == 200
        events = [(e.event, e.json()) async for e in source.aiter_sse()]
    assert events[-1][1]["is_final"] and events[-1][1]["finish_reason"] == "stop"
    assert "".join(d["content"] for _, d in events[:-1]) == "Hello from the fake"
