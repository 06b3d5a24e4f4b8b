"""PostgreSQL outages: every chat request is served, and afterwards every record is a row, once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select

from backend.database.engine import make_engine
from backend.tests.support import postgres_database
from backend.tests.usage.helpers import ADMIN_TOKEN, TcpProxy, count_rows, eventually
from backend.tests.usage.portal import Portal, chat_body, running_portal
from backend.usage.table import usage_log

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()


async def _status(portal: Portal) -> dict[str, Any]:
    response = await portal.client.get("/usage/status", headers=ADMIN)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


async def _chat(client: httpx.AsyncClient, index: int) -> str:
    body = chat_body("demo", f"question {index}")
    if index % 5:  # mostly sends, every fifth a stream: both paths, and a quick test
        response = await client.post("/chat/send", json=body)
        assert response.status_code == 200, response.text
    else:
        async with client.stream("POST", "/chat/stream", json=body) as response:
            assert response.status_code == 200
            text = "".join([line async for line in response.aiter_lines()])
            assert '"is_final":true' in text
    return response.headers["x-request-id"]


async def _many(client: httpx.AsyncClient, n: int, concurrency: int = 16) -> list[str]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with gate:
            return await _chat(client, i)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def test_a_thousand_requests_during_an_outage_become_a_thousand_rows(
    tmp_path: Path,
) -> None:
    async with postgres_database() as real_url:
        proxy = TcpProxy("127.0.0.1", urlsplit(real_url).port or 5432)
        await proxy.start()
        direct = make_engine(real_url)
        try:
            async with running_portal(
                tmp_path, _through(proxy, real_url), database_connect_timeout_seconds=1
            ) as portal:
                await proxy.stop()  # PostgreSQL is gone
                ids = await _many(portal.client, 1000)  # every one served
                status = await _status(portal)
                assert status["database"] == "unavailable"
                assert status["spool_records"] + status["queue_depth"] == 1000

                await proxy.start()  # and back
                async def replayed() -> bool:
                    return await count_rows(direct) == 1000

                await eventually(replayed, within=30)
                assert (await _status(portal))["spool_records"] == 0
            async with direct.connect() as conn:
                stored = (await conn.execute(select(usage_log.c.request_id))).scalars().all()
                distinct = (
                    await conn.execute(select(func.count(func.distinct(usage_log.c.request_id))))
                ).scalar_one()
            assert sorted(stored) == sorted(ids) and distinct == 1000  # exactly, no duplicates
        finally:
            await direct.dispose()
            await proxy.stop()


async def test_a_database_that_never_answers_does_not_slow_chat_or_stall_the_writer(
    tmp_path: Path,
) -> None:
    async with postgres_database() as real_url:
        proxy = TcpProxy("127.0.0.1", urlsplit(real_url).port or 5432)
        await proxy.start()
        direct = make_engine(real_url)
        try:
            async with running_portal(
                tmp_path, _through(proxy, real_url),
                database_connect_timeout_seconds=0.5, usage_write_timeout_seconds=0.5,
            ) as portal:
                proxy.hang()  # connections open, nothing ever comes back
                started = time.perf_counter()
                ids = await _many(portal.client, 40, concurrency=4)
                assert time.perf_counter() - started < 5  # chat never waited on the database

                async def spooled() -> bool:
                    return (await _status(portal))["spool_records"] == 40

                await eventually(spooled, within=5)  # the writer gave up on time
                proxy.resume()

                async def replayed() -> bool:
                    return await count_rows(direct) == 40

                await eventually(replayed, within=20)
            async with direct.connect() as conn:
                stored = (await conn.execute(select(usage_log.c.request_id))).scalars().all()
            assert sorted(stored) == sorted(ids)
        finally:
            await direct.dispose()
            proxy.resume()
            await proxy.stop()
