"""Two `python -m uvicorn` processes sharing Redis and PostgreSQL: one exact budget across
workers, admin changes in force everywhere at once, and a crashed worker's reservation."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from backend.database.engine import make_engine
from backend.database.migrations import upgrade
from backend.tests.budgets.helpers import (
    OPENAI,
    PRICES,
    chat,
    exact_usage,
    headers,
    spent_by,
    worst_case_usd,
)
from backend.tests.chat.conftest import write_specialists
from backend.tests.fakes import openai_fake
from backend.tests.fakes.script import FakeState
from backend.tests.ratelimit.servers import burst, server_env, uvicorn_processes
from backend.tests.support import postgres_database
from backend.tests.usage.helpers import ADMIN_TOKEN, eventually

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@asynccontextmanager
async def two_workers(
    tmp_path: Path, redis_url: str, prefix: str, **settings: str
) -> AsyncIterator[tuple[list[tuple[str, asyncio.subprocess.Process]], FakeState, str]]:
    """Two servers on one Redis prefix and one PostgreSQL database; (servers, fake, db)."""
    async with postgres_database() as database, openai_fake.start() as (fake_url, fake):
        engine = make_engine(database)
        await upgrade(engine)  # once, before both start (AUTO_MIGRATE is off for PostgreSQL)
        await engine.dispose()
        specialists = write_specialists(tmp_path / "specialists.yaml", fake_url)
        common = {
            "REDIS_URL": redis_url, "BUDGET_REDIS_PREFIX": prefix,
            "RATE_LIMIT_REDIS_PREFIX": prefix + "rl:", "DATABASE_URL": database,
            "SPECIALISTS_FILE": str(specialists), "OPENAI_BASE_URL": fake_url,
            "OPENAI_API_KEY": openai_fake.API_KEY, "PRICE_OVERRIDES": orjson.dumps(PRICES).decode(),
            "RATE_LIMIT_REQUESTS": "100000", "ADMIN_TOKEN": ADMIN_TOKEN,
            "USAGE_FLUSH_INTERVAL_SECONDS": "0.01", "RETRY_MAX_ATTEMPTS": "1", **settings,
        }
        envs = [server_env(tmp_path, name, **common) for name in ("a", "b")]
        async with uvicorn_processes(envs) as servers:
            yield servers, fake, database


async def test_two_workers_on_redis_admit_exactly_what_fits(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    limit = 10.5 * worst_case_usd()
    async with two_workers(tmp_path, redis_url, redis_prefix, BUDGET_USER_USD=str(limit)) as (
        servers, fake, database,
    ):
        exact_usage(fake)
        urls = [url for url, _ in servers]
        answers = await burst(urls, 1000, body={"specialist_id": OPENAI, "message": "hello"},
                              headers={"x-user-email": "new@example.com"})
        statuses = [status for status, _ in answers]
        assert statuses.count(200) == 10 and statuses.count(402) == 990
        engine = make_engine(database)
        try:
            await eventually(lambda: _rows(engine, "new@example.com", 10), within=20)
            rows, cost = await spent_by(engine, "new@example.com")
        finally:
            await engine.dispose()
        assert rows == 10 and cost <= limit
        async with aiohttp.ClientSession() as session:
            for url in urls:  # both workers see the same counters, and they match the rows
                async with session.get(f"{url}/me/budget",
                                       headers={"x-user-email": "new@example.com"}) as r:
                    user = (await r.json())["budgets"][0]
                assert user["reserved_usd"] == 0
                assert abs(user["spent_usd"] - cost) < 1e-7

            # An admin change on one worker is in force on the other at once.
            a, b = urls
            async with session.put(f"{a}/admin/budgets/user/raised@example.com",
                                   json={"limit_usd": 0.0}, headers=ADMIN) as r:
                assert r.status == 200
            async with session.post(f"{b}/chat/send", data=chat(),
                                    headers=headers("raised@example.com")) as r:
                assert r.status == 402
            async with session.put(f"{b}/admin/budgets/user/raised@example.com",
                                   json={"limit_usd": 1.0}, headers=ADMIN) as r:
                assert r.status == 200
            async with session.post(f"{a}/chat/send", data=chat(),
                                    headers=headers("raised@example.com")) as r:
                assert r.status == 200
                assert float(r.headers["x-budget-remaining-usd"]) > 0.99


async def _rows(engine: Any, email: str, count: int) -> bool:
    return (await spent_by(engine, email))[0] >= count


async def test_a_crashed_workers_reservation_expires(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with two_workers(
        tmp_path, redis_url, redis_prefix, BUDGET_USER_USD=str(1.5 * worst_case_usd()),
        BUDGET_RESERVATION_TTL_SECONDS="10",
    ) as (servers, fake, _):
        (a, dying), (b, _) = servers
        fake.script.first_byte_delay = 60  # the request is in flight when its worker dies
        async with aiohttp.ClientSession() as session:
            pending = asyncio.create_task(
                session.post(f"{a}/chat/send", data=chat(), headers=headers("z@x.com")))
            await eventually(lambda: _async(len(fake.requests) == 1), within=10)
            dying.send_signal(signal.SIGKILL)
            await dying.wait()
            try:
                await pending
            except aiohttp.ClientError:
                pass  # the connection died with the worker
            fake.script.first_byte_delay = 0
            async with session.post(f"{b}/chat/send", data=chat(),
                                    headers=headers("z@x.com")) as r:
                assert r.status == 402  # the dead worker's reservation still holds the budget
                assert (await r.json())["reserved_usd"] > 0
            await asyncio.sleep(10.5)  # BUDGET_RESERVATION_TTL_SECONDS, by Redis's clock
            async with session.post(f"{b}/chat/send", data=chat(),
                                    headers=headers("z@x.com")) as r:
                assert r.status == 200


async def _async(value: bool) -> bool:
    return value
