"""A server stopping with a stream in flight still settles that stream's reservation: the
budget counters (in Redis, so they outlive the process) equal the usage row it recorded."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from backend.database.engine import make_engine
from backend.tests.budgets.helpers import PRICES, chat, headers, spent_by, worst_case_usd
from backend.tests.budgets.test_api import NANO
from backend.tests.chat.conftest import write_specialists
from backend.tests.fakes import openai_fake
from backend.tests.support import make_settings, run_app

EMAIL = "leaving@example.com"


async def test_a_stream_cut_by_shutdown_is_settled_to_its_row(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with openai_fake.start() as (openai_url, fake):
        settings = make_settings(
            tmp_path, openai_base_url=openai_url, openai_api_key=openai_fake.API_KEY,
            specialists_file=write_specialists(tmp_path / "specialists.yaml", openai_url),
            price_overrides=PRICES, budget_user_usd=100 * worst_case_usd(),
            redis_url=redis_url, budget_backend="redis", budget_redis_prefix=redis_prefix,
        )
        # Thirty chunks a second apart: still streaming when the server is told to stop
        # (run_app gives in-flight requests 2 s, then cancels them).
        fake.script.chunks = [f" part {n}" for n in range(30)]
        fake.script.chunk_delay = 1.0
        server = AsyncExitStack()
        url = await server.enter_async_context(run_app(settings))
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            request = client.build_request(
                "POST", "/chat/stream", content=chat(), headers=headers(EMAIL)
            )
            response = await client.send(request, stream=True)
            try:
                assert response.status_code == 200
                await anext(response.aiter_bytes())  # the answer has started
                await server.aclose()  # the server stops with the stream in flight
            finally:
                await response.aclose()

        # A new server on the same database and Redis: the counters as the first one left them.
        async with run_app(settings) as url, httpx.AsyncClient(base_url=url) as client:
            budget = (await client.get("/me/budget", headers={"x-user-email": EMAIL})).json()
    engine = make_engine(settings.database_url)
    try:
        rows, cost = await spent_by(engine, EMAIL)
    finally:
        await engine.dispose()
    mine = {b["scope"]: b for b in budget["budgets"]}["user"]
    assert rows == 1 and cost > 0  # the interrupted stream was recorded and billed
    assert mine["reserved_usd"] == 0  # its worst case is no longer held
    assert mine["spent_usd"] == pytest.approx(cost, abs=2 * NANO)
