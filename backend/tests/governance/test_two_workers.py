"""Two `python -m uvicorn` processes on one PostgreSQL: a version approved through one serves
on the other within 2 s with no restart, and a chat in flight during the switch finishes on
its old version, as its usage row says."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from sqlalchemy import select

from backend.database.engine import make_engine
from backend.tests.fakes import openai_fake
from backend.tests.fakes.script import FakeState, Script
from backend.tests.governance.conftest import ALICE, BOB, CAROL, sha
from backend.tests.ratelimit.servers import server_env, uvicorn_servers
from backend.tests.support import postgres_database
from backend.usage.table import usage_log

SID = "11111111-1111-4111-8111-111111111111"
SWITCH_BOUND = 2.0  # the promise; the poll is 0.5 s


def _env(tmp_path: Path, name: str, database_url: str, openai_url: str) -> dict[str, str]:
    path = tmp_path / "specialists.yaml"
    path.write_text(yaml.safe_dump({"specialists": [{
        "id": SID, "name": "Treasury", "provider": "openai", "model": "gpt-4o",
        "system_prompt": "v1 prompt"}]}))
    return server_env(
        tmp_path, name, DATABASE_URL=database_url, AUTO_MIGRATE="true",
        AUTH_MODE="header", TRUSTED_FRONTENDS='["127.0.0.0/8"]',
        ADMIN_GROUPS='["portal-admins"]', SPECIALISTS_FILE=str(path),
        OPENAI_BASE_URL=openai_url, OPENAI_API_KEY=openai_fake.API_KEY,
        SPECIALISTS_SYNC_SECONDS="0.5",
    )


def _last_prompt(state: FakeState) -> str:
    return str(state.requests[-1].json["messages"][0]["content"])


async def _row(database_url: str, request_id: str) -> dict[str, Any]:
    engine = make_engine(database_url)
    try:
        deadline = time.monotonic() + 10
        while True:
            async with engine.connect() as conn:
                row = (await conn.execute(
                    select(usage_log).where(usage_log.c.request_id == request_id))).first()
            if row is not None or time.monotonic() > deadline:
                assert row is not None, f"no usage row for {request_id}"
                return dict(row._mapping)
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


async def test_an_approval_through_one_worker_serves_on_the_other_within_two_seconds(
    tmp_path: Path,
) -> None:
    chat = orjson.dumps({"specialist_id": SID, "message": "hi"})
    headers = {**CAROL, "content-type": "application/json"}
    async with postgres_database() as url, openai_fake.start() as (openai_url, state):
        # Started one after the other: the first seeds the empty database.
        async with uvicorn_servers([_env(tmp_path, "a", url, openai_url)]) as (a,), \
                uvicorn_servers([_env(tmp_path, "b", url, openai_url)]) as (b,), \
                httpx.AsyncClient(timeout=30) as client:
            proposed = await client.post(f"{a}/admin/specialists/{SID}/versions", headers=ALICE,
                                         json={"system_prompt": "v2 prompt", "reason": "r"})
            assert proposed.status_code == 201, proposed.text

            # A chat on B whose upstream answer is slow: in flight across the switch.
            state.script = Script(first_byte_delay=2.5)
            in_flight = asyncio.create_task(
                client.post(f"{b}/chat/send", content=chat, headers=headers))
            for _ in range(1000):  # until the fake holds it (a fake's request list, no event)
                if state.requests:
                    break
                await asyncio.sleep(0.01)
            assert state.requests, "the slow chat never reached the upstream"
            state.script = Script()

            approved = await client.post(f"{a}/admin/specialists/{SID}/versions/2/approve",
                                         headers=BOB)
            assert approved.status_code == 200 and approved.json()["state"] == "live"
            approved_at = time.monotonic()
            while True:
                after = await client.post(f"{b}/chat/send", content=chat, headers=headers)
                assert after.status_code == 200
                if _last_prompt(state) == "v2 prompt":
                    break
                assert time.monotonic() - approved_at < SWITCH_BOUND, "B still serves v1"
                await asyncio.sleep(0.05)
            switched = time.monotonic() - approved_at
            print(f"B served the approved version {switched:.3f} s after the approval")
            assert switched < SWITCH_BOUND

            old = await in_flight
            assert old.status_code == 200, old.text
            assert state.requests[0].json["messages"][0]["content"] == "v1 prompt"
            old_row = await _row(url, old.headers["x-request-id"])
            new_row = await _row(url, after.headers["x-request-id"])
    assert (old_row["specialist_version"], old_row["prompt_hash"]) == (1, sha("v1 prompt"))
    assert (new_row["specialist_version"], new_row["prompt_hash"]) == (2, sha("v2 prompt"))
    assert old_row["success"] and not old_row["trial"]


async def test_on_sqlite_a_second_app_polls_the_change_in(
    portal_factory: Any, tmp_path: Path
) -> None:
    from backend.tests.chat.conftest import SPECIALISTS
    from backend.tests.governance.conftest import governed_portal

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = await governed_portal(portal_factory, url, specialists_sync_seconds=0.5)
    second = await governed_portal(portal_factory, url, specialists_sync_seconds=0.5)
    sid = SPECIALISTS["demo"]
    body = {"specialist_id": sid, "message": "hi"}
    await first.client.post(f"/admin/specialists/{sid}/versions", headers=ALICE,
                            json={"name": "Renamed demo", "reason": "r"})
    approved = await first.client.post(f"/admin/specialists/{sid}/versions/2/approve",
                                       headers=BOB)
    assert approved.json()["state"] == "live"
    assert (await first.client.post("/chat/send", json=body, headers=CAROL)).json()[
        "specialist_name"] == "Renamed demo"  # the worker that approved: at once
    approved_at = time.monotonic()
    while (await second.client.post("/chat/send", json=body, headers=CAROL)).json()[
            "specialist_name"] != "Renamed demo":
        assert time.monotonic() - approved_at < SWITCH_BOUND
        await asyncio.sleep(0.05)
