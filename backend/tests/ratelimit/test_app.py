"""The limiter through the real app on a real server: exactness, keys, headers, outages."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from httpx_sse import aconnect_sse

from backend.tests.fakes import openai_fake
from backend.tests.fakes.script import FakeState
from backend.tests.ratelimit.servers import burst, free_port
from backend.tests.support import make_settings, run_app

OPENAI = "11111111-1111-4111-8111-111111111111"
DEMO = "00000000-0000-4000-8000-000000000001"
LIMITED = "22222222-2222-4222-8222-222222222222"  # given its own limit by a setting
CAPPED_IN_FILE = "33333333-3333-4333-8333-333333333333"  # by the specialists file
NO_KEY = "44444444-4444-4444-8444-444444444444"


def write_specialists(path: Path) -> Path:
    entries: list[dict[str, Any]] = [
        {"id": OPENAI, "name": "openai", "provider": "openai", "model": "gpt-4o"},
        {"id": DEMO, "name": "demo", "provider": "demo", "model": "demo-echo"},
        {"id": LIMITED, "name": "limited", "provider": "demo", "model": "demo-echo"},
        {"id": CAPPED_IN_FILE, "name": "capped", "provider": "demo", "model": "demo-echo",
         "rate_limit": {"requests": 1, "window_seconds": 600}},
        {"id": NO_KEY, "name": "no key", "provider": "anthropic", "model": "claude-sonnet-4-5"},
    ]
    path.write_text(yaml.safe_dump({"specialists": entries}))
    return path


@asynccontextmanager
async def portal(
    tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, FakeState]]:
    """The app on a real uvicorn, its OpenAI provider pointed at the fake."""
    async with openai_fake.start() as (openai_url, state):
        settings = make_settings(
            tmp_path,
            openai_base_url=openai_url,
            openai_api_key=openai_fake.API_KEY,
            specialists_file=write_specialists(tmp_path / "specialists.yaml"),
            **overrides,
        )
        async with run_app(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield client, state


def chat(specialist: str = DEMO) -> dict[str, Any]:
    return {"specialist_id": specialist, "message": "hello"}


def user(email: str) -> dict[str, str]:
    return {"x-user-email": email}


def usage_rows(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "usage.db") as db:
        return int(db.execute("SELECT count(*) FROM usage_log").fetchone()[0])


async def test_1000_concurrent_requests_against_60_tokens_admit_exactly_60(
    tmp_path: Path,
) -> None:
    async with portal(tmp_path, rate_limit_requests=60) as (client, upstream):
        results = await burst([str(client.base_url).rstrip("/")], 1000, chat(OPENAI))
        health = (await client.get("/health")).json()
    statuses = [status for status, _ in results]
    assert statuses.count(200) == 60 and statuses.count(429) == 940
    admitted = sorted(int(h["x-ratelimit-remaining"]) for s, h in results if s == 200)
    assert admitted == list(range(60))  # every token handed out once, none twice
    assert all(int(h["retry-after"]) >= 1 for s, h in results if s == 429)
    # Refused requests never reached the provider and were never recorded, but were counted.
    assert len(upstream.requests) == 60
    assert health["rate_limit"]["rejected"] == 940 and health["rate_limit"]["admitted"] == 60
    assert usage_rows(tmp_path) == 60


async def test_every_chat_response_carries_the_headers(tmp_path: Path) -> None:
    async with portal(tmp_path, rate_limit_requests=7) as (client, _):
        responses = [
            await client.post("/chat/send", content=b"{not json",
                              headers={"content-type": "application/json"}),
            await client.post("/chat/send", json={"specialist_id": DEMO}),
            await client.post("/chat/send", json=chat("99999999-9999-4999-8999-999999999999")),
            await client.post("/chat/send", json=chat(NO_KEY)),
            await client.post("/chat/send", json=chat(DEMO)),
        ]
        async with aconnect_sse(client, "POST", "/chat/stream", json=chat(DEMO)) as source:
            events = [event.event async for event in source.aiter_sse()]
            responses.append(source.response)
        responses.append(await client.post("/chat/stream", json=chat(DEMO)))
        responses.append(await client.post("/chat/stream", json=chat(DEMO)))
    assert [r.status_code for r in responses] == [422, 422, 404, 503, 200, 200, 200, 429]
    assert events and set(events) == {"message"}
    # Each one took a token, malformed ones included (they are limited before parsing).
    assert [r.headers["x-ratelimit-remaining"] for r in responses] == [
        "6", "5", "4", "3", "2", "1", "0", "0"
    ]
    assert all(r.headers["x-ratelimit-limit"] == "7" for r in responses)
    assert all(int(r.headers["x-ratelimit-reset"]) > 0 for r in responses)
    # A token every 3600/7 = 514.3 s, less what refilled during the test, rounded up.
    assert responses[-1].headers["retry-after"] in ("514", "515")
    assert responses[-1].json()["error"] == "rate_limited"


async def test_users_have_their_own_bucket_and_the_stricter_decides(tmp_path: Path) -> None:
    async with portal(tmp_path, rate_limit_requests=4, rate_limit_user_requests=2) as (c, _):
        alice = [await c.post("/chat/send", json=chat(), headers=user("a@x.com")) for _ in range(3)]
        bob = await c.post("/chat/send", json=chat(), headers=user("B@X.com"))
        anonymous = await c.post("/chat/send", json=chat())
        carol = await c.post("/chat/send", json=chat(), headers=user("c@x.com"))
    assert [r.status_code for r in alice] == [200, 200, 429]
    # Alice's user bucket (2) is stricter than the IP's (4): it is the one reported.
    assert [r.headers["x-ratelimit-limit"] for r in alice] == ["2", "2", "2"]
    assert "for this user" in alice[2].json()["message"]
    # Bob has his own user bucket, but shares the IP bucket (4 - 2 - 1 = 1 left after him).
    assert bob.status_code == 200 and bob.headers["x-ratelimit-remaining"] == "1"
    assert anonymous.status_code == 200 and anonymous.headers["x-ratelimit-limit"] == "4"
    # The IP bucket is empty now: it refuses Carol, whose own bucket is full.
    assert carol.status_code == 429 and "for this ip" in carol.json()["message"]
    assert carol.headers["x-ratelimit-limit"] == "4"


async def test_a_named_user_has_their_own_capacity(tmp_path: Path) -> None:
    async with portal(
        tmp_path, rate_limit_requests=100, rate_limit_user_requests=1,
        rate_limit_users={"VIP@example.com": {"requests": 3}},
    ) as (c, _):
        vip = [await c.post("/chat/send", json=chat(), headers=user("vip@example.com"))
               for _ in range(4)]
        other = [await c.post("/chat/send", json=chat(), headers=user("x@example.com"))
                 for _ in range(2)]
    assert [r.status_code for r in vip] == [200, 200, 200, 429]
    assert vip[0].headers["x-ratelimit-limit"] == "3"
    assert [r.status_code for r in other] == [200, 429]


async def test_specialists_with_their_own_limit_from_settings_or_the_file(
    tmp_path: Path,
) -> None:
    async with portal(
        tmp_path, rate_limit_requests=100,
        rate_limit_specialists={LIMITED: {"requests": 2, "window_seconds": 60}},
    ) as (c, _):
        limited = [await c.post("/chat/send", json=chat(LIMITED)) for _ in range(3)]
        capped = [await c.post("/chat/send", json=chat(CAPPED_IN_FILE)) for _ in range(2)]
        # The same specialist id in another spelling is the same bucket.
        upper = await c.post("/chat/send", json=chat(LIMITED.upper()))
        others = await c.post("/chat/send", json=chat(DEMO))
    assert [r.status_code for r in limited] == [200, 200, 429]
    assert limited[0].headers["x-ratelimit-limit"] == "2"
    assert limited[2].headers["retry-after"] == "30"  # 2 per 60 s: a token every 30 s
    assert "on this specialist" in limited[2].json()["message"]
    assert [r.status_code for r in capped] == [200, 429]
    assert capped[1].headers["retry-after"] == "600"
    assert upper.status_code == 429
    # Other specialists only see the general bucket, which paid for every admitted request.
    assert others.status_code == 200 and others.headers["x-ratelimit-limit"] == "100"
    assert others.headers["x-ratelimit-remaining"] == str(100 - 4)


async def test_redis_unreachable_fails_open_serving_counting_and_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    with caplog.at_level(logging.WARNING):
        async with portal(tmp_path, redis_url=closed, rate_limit_requests=1) as (c, upstream):
            responses = [await c.post("/chat/send", json=chat(OPENAI)) for _ in range(3)]
            health = (await c.get("/health")).json()
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert responses[0].headers["x-ratelimit-limit"] == "1"
    assert len(upstream.requests) == 3
    assert health["rate_limit"]["backend"] == "redis"
    assert health["rate_limit"]["failed_open"] == 3
    assert any("failing open" in r.getMessage() for r in caplog.records)


async def test_redis_unreachable_fails_closed_with_a_clear_503(tmp_path: Path) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    async with portal(tmp_path, redis_url=closed, rate_limit_fail_open=False) as (c, upstream):
        refused = await c.post("/chat/send", json=chat(OPENAI))
        health = (await c.get("/health")).json()
    assert refused.status_code == 503
    assert refused.json()["error"] == "rate_limiter_unavailable"
    assert "rate limiter is unavailable" in refused.json()["message"]
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert upstream.requests == []
    assert health["rate_limit"]["failed_closed"] == 1
    assert usage_rows(tmp_path) == 0
