"""One row per interaction, through the real server, for each provider, on both databases:
send, stream, upstream errors, client disconnects and server shutdown."""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config.pricing import PriceBook
from backend.providers.base import Usage
from backend.tests.fakes.script import Script
from backend.tests.usage.helpers import count_rows, eventually
from backend.tests.usage.portal import MODELS, Portal, chat_body, running_portal
from backend.usage.identity import hash_email
from backend.usage.table import usage_log

EMAIL = "Finance.User@example.com"
PROMPT_HASH = hashlib.sha256(b"You are the usage test specialist.").hexdigest()


async def _row(engine: AsyncEngine, request_id: str) -> dict[str, Any]:
    async def present() -> bool:
        async with engine.connect() as conn:
            result = await conn.execute(
                select(usage_log).where(usage_log.c.request_id == request_id)
            )
            found.extend(dict(r._mapping) for r in result)
        return bool(found)

    found: list[dict[str, Any]] = []
    await eventually(present)
    assert len(found) == 1
    return found[0]


async def _events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    name = "message"
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            events.append((name, orjson.loads(line.split(":", 1)[1])))
    return events


def _assert_reported(row: dict[str, Any], provider: str, *, streamed: bool) -> None:
    model = MODELS[provider]
    assert row["success"] is True and row["error_kind"] is None
    assert row["streamed"] is streamed
    assert (row["provider"], row["model"]) == (provider, model)
    assert (row["input_tokens"], row["output_tokens"]) == (11, 7)  # the fake's usage
    assert row["tokens_estimated"] is False
    assert row["cached_input_tokens"] in (0, None)
    expected = PriceBook({}).estimate(provider, model, Usage(11, 7))
    assert expected is not None and row["estimated_cost_usd"] == pytest.approx(expected)
    assert row["user_email_hash"] == hash_email(b"test-secret", EMAIL)
    assert row["specialist_version"] == 3 and row["prompt_hash"] == PROMPT_HASH
    assert row["rate_limit_key_kind"] in ("ip", "user") and row["latency_ms"] > 0


async def _send_ok(portal: Portal, provider: str) -> str:
    response = await portal.client.post(
        "/chat/send", json=chat_body(provider), headers={"X-User-Email": EMAIL}
    )
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert response.json()["request_id"] == request_id
    _assert_reported(await _row(portal.engine, request_id), provider, streamed=False)
    return request_id


async def _stream_ok(portal: Portal, provider: str) -> str:
    async with portal.client.stream(
        "POST", "/chat/stream", json=chat_body(provider), headers={"X-User-Email": EMAIL}
    ) as response:
        assert response.status_code == 200
        events = await _events(response)
    request_id = response.headers["x-request-id"]
    final = events[-1][1]
    assert final["is_final"] is True and final["request_id"] == request_id
    row = await _row(portal.engine, request_id)
    _assert_reported(row, provider, streamed=True)
    assert final["estimated_cost_usd"] == row["estimated_cost_usd"]
    return request_id


async def _send_upstream_error(portal: Portal, provider: str) -> str:
    portal.fakes[provider].script = Script(error_status=500)
    response = await portal.client.post("/chat/send", json=chat_body(provider))
    assert response.status_code in (502, 503), response.text
    request_id = response.headers["x-request-id"]
    row = await _row(portal.engine, request_id)
    assert row["success"] is False and row["error_kind"] == response.json()["error"]
    assert row["streamed"] is False and row["output_tokens"] == 0
    # A 500 before any generation is not billed: zero tokens, zero cost, flagged, not guessed.
    assert (row["input_tokens"], row["estimated_cost_usd"]) == (0, 0.0)
    assert row["billed"] is False and row["tokens_estimated"] is False
    assert row["finish_reason"] is None
    return request_id


async def _stream_upstream_error(portal: Portal, provider: str) -> str:
    portal.fakes[provider].script = Script(stream_error_after=1)
    async with portal.client.stream("POST", "/chat/stream", json=chat_body(provider)) as response:
        assert response.status_code == 200
        events = await _events(response)
    request_id = response.headers["x-request-id"]
    name, data = events[-1]
    assert name == "error"
    row = await _row(portal.engine, request_id)
    assert row["success"] is False and row["error_kind"] == data["error"]
    assert row["streamed"] is True
    return request_id


async def _stream_disconnect(portal: Portal, provider: str) -> str:
    portal.fakes[provider].script = Script(chunks=["word "] * 40, chunk_delay=0.05)
    async with portal.client.stream("POST", "/chat/stream", json=chat_body(provider)) as response:
        request_id = response.headers["x-request-id"]
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data:")
            if seen == 3:
                break  # the client goes away mid-answer
    row = await _row(portal.engine, request_id)
    assert row["success"] is False and row["error_kind"] == "client_disconnected"
    assert row["streamed"] is True
    # No usage had arrived: an estimate from what was generated so far, flagged as such.
    assert row["tokens_estimated"] is True and row["output_tokens"] >= 3
    assert row["input_tokens"] > 0
    return request_id


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
async def test_every_interaction_is_exactly_one_row(
    provider: str, database_url: str, tmp_path: Path
) -> None:
    async with running_portal(tmp_path, database_url) as portal:
        ids = [await _send_ok(portal, provider), await _stream_ok(portal, provider)]
        ids.append(await _send_upstream_error(portal, provider))
        ids.append(await _stream_upstream_error(portal, provider))
        ids.append(await _stream_disconnect(portal, provider))
        await asyncio.sleep(0.2)  # time for a duplicate to show up, if there were one
        assert len(set(ids)) == 5 and await count_rows(portal.engine) == 5


async def test_a_key_the_provider_refuses_is_an_unbilled_row(
    database_url: str, tmp_path: Path
) -> None:
    # Each fake answers a wrong key as its API does: OpenAI and Anthropic with 401, Google
    # with 400 INVALID_ARGUMENT naming API_KEY_INVALID. Nothing was generated, so nothing
    # was billed: the row says 0 and `billed=false`, not an estimate of the prompt.
    wrong = {f"{name}_api_key": "not-the-key" for name in ("openai", "anthropic", "google")}
    async with running_portal(tmp_path, database_url, **wrong) as portal:
        for provider in ("openai", "anthropic", "google"):
            for path, streamed in (("/chat/send", False), ("/chat/stream", True)):
                response = await portal.client.post(path, json=chat_body(provider))
                assert response.status_code == 502, response.text
                assert response.json()["error"] == "upstream_auth"
                row = await _row(portal.engine, response.headers["x-request-id"])
                assert (row["provider"], row["streamed"]) == (provider, streamed)
                assert (row["success"], row["error_kind"]) == (False, "upstream_auth")
                assert (row["input_tokens"], row["output_tokens"]) == (0, 0)
                assert row["estimated_cost_usd"] == 0.0 and row["billed"] is False
                assert row["tokens_estimated"] is False and row["finish_reason"] is None


async def test_a_stream_cut_by_server_shutdown_is_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    stack = AsyncExitStack()
    portal = await stack.enter_async_context(running_portal(tmp_path, url))
    portal.fakes["openai"].script = Script(chunks=["word "] * 200, chunk_delay=0.05)
    engine = portal.engine
    request_id = ""
    async with httpx.AsyncClient(base_url=portal.url, timeout=20) as client:
        async with client.stream("POST", "/chat/stream", json=chat_body("openai")) as response:
            request_id = response.headers["x-request-id"]
            lines = response.aiter_lines()
            await anext(lines)
            closing = asyncio.create_task(stack.aclose())  # uvicorn shuts down mid-stream
            try:
                async for _ in lines:
                    pass
            except httpx.HTTPError:
                pass  # the server cut the connection
            await closing
    # The lifespan drained the queue before the app exited: the row is there already.
    check = running_portal(tmp_path, url)
    async with check as again:
        row = await _row(again.engine, request_id)
    assert row["success"] is False and row["streamed"] is True
    assert row["tokens_estimated"] is True and row["output_tokens"] > 0
    assert engine is not again.engine


async def test_a_client_gone_before_the_first_token_is_recorded(tmp_path: Path) -> None:
    async with running_portal(tmp_path, f"sqlite:///{tmp_path / 'usage.db'}") as portal:
        portal.fakes["openai"].script = Script(
            first_byte_delay=0.6, chunks=["word "] * 40, chunk_delay=0.05
        )

        async def ask() -> None:
            async with portal.client.stream("POST", "/chat/stream", json=chat_body("openai")):
                pass

        task = asyncio.create_task(ask())
        await asyncio.sleep(0.3)
        task.cancel()  # the user pressed stop while the model was still thinking
        await asyncio.gather(task, return_exceptions=True)

        async def one_row() -> bool:
            return await count_rows(portal.engine) == 1

        await eventually(one_row, within=5)
        async with portal.engine.connect() as conn:
            row = (await conn.execute(select(usage_log))).one()._mapping
        assert row["success"] is False and row["error_kind"] == "client_disconnected"
        assert row["tokens_estimated"] is True
