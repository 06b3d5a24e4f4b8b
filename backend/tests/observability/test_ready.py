"""GET /ready: 503 naming the failed check while PostgreSQL is unreachable, 200 once it is back;
the spool may stand in for the database up to its bound; Redis and specialists count too."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from backend.tests.ratelimit.conftest import REDIS_URL, redis_url
from backend.tests.support import postgres_database
from backend.tests.usage.helpers import TcpProxy, eventually
from backend.tests.usage.portal import Portal, chat_body, running_portal

__all__ = ["redis_url"]


@asynccontextmanager
async def behind_proxy(tmp_path: Path, **overrides: Any) -> AsyncIterator[tuple[Portal, TcpProxy]]:
    """A portal on its own PostgreSQL database, reached through a proxy the test can cut."""
    async with postgres_database() as real_url:
        proxy = TcpProxy("127.0.0.1", urlsplit(real_url).port or 5432)
        await proxy.start()
        through = urlsplit(real_url)._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
        try:
            async with running_portal(
                tmp_path, through, database_connect_timeout_seconds=1, **overrides
            ) as portal:
                yield portal, proxy
        finally:
            await proxy.stop()


async def ready(portal: Portal) -> tuple[int, dict[str, Any]]:
    """GET /ready: status and body."""
    response = await portal.client.get("/ready")
    body: dict[str, Any] = response.json()
    return response.status_code, body


def assert_no_secrets(portal: Portal, body: dict[str, Any]) -> None:
    """Neither the database URL, a host:port nor a key appears in the body."""
    text = str(body)
    assert portal.settings.database_url not in text
    assert "127.0.0.1" not in text and "postgresql" not in text
    for key in ("openai_api_key", "anthropic_api_key", "google_api_key"):
        secret = getattr(portal.settings, key)
        assert secret is None or secret.get_secret_value() not in text


async def test_ready_fails_while_postgres_is_unreachable_and_recovers(tmp_path: Path) -> None:
    # READY_MAX_SPOOL_RECORDS=0: the database must answer.
    async with behind_proxy(tmp_path, ready_max_spool_records=0) as (portal, proxy):
        status, body = await ready(portal)
        assert (status, body["status"], body["failed"]) == (200, "ready", [])
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"] == "not configured"

        await proxy.stop()  # PostgreSQL is gone
        status, body = await ready(portal)
        assert (status, body["status"], body["failed"]) == (503, "not_ready", ["database"])
        assert body["checks"]["database"].startswith("unavailable")
        assert_no_secrets(portal, body)
        assert (await portal.client.get("/health")).status_code == 200  # still alive

        await proxy.start()  # and back

        async def back() -> bool:
            return (await ready(portal))[0] == 200

        await eventually(back, within=10)
        assert all(not fake.requests for fake in portal.fakes.values())


async def test_the_spool_stands_in_for_the_database_up_to_its_bound(tmp_path: Path) -> None:
    async with behind_proxy(tmp_path, ready_max_spool_records=3) as (portal, proxy):
        await proxy.stop()
        status, body = await ready(portal)
        assert status == 200 and body["checks"]["database"].startswith("unavailable")
        assert body["checks"]["spool"] == "ok (0 records)"
        for i in range(3):
            sent = await portal.client.post("/chat/send", json=chat_body("demo", str(i)))
            assert sent.status_code == 200

        async def full() -> bool:
            return (await ready(portal))[0] == 503

        await eventually(full, within=10)
        status, body = await ready(portal)
        assert body["failed"] == ["database"]
        assert body["checks"]["spool"] == "ok (3 records)"
        await proxy.start()

        async def replayed() -> bool:
            code, now = await ready(portal)
            return code == 200 and now["checks"]["spool"] == "ok (0 records)"

        await eventually(replayed, within=30)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_redis_counts_when_configured(tmp_path: Path, redis_url: str) -> None:
    database = f"sqlite:///{tmp_path / 'usage.db'}"
    (tmp_path / "up").mkdir()
    async with running_portal(tmp_path / "up", database, redis_url=redis_url) as portal:
        status, body = await ready(portal)
        assert (status, body["checks"]["redis"]) == (200, "ok")
    (tmp_path / "down").mkdir()
    nowhere = f"redis://127.0.0.1:{_closed_port()}/0"
    async with running_portal(tmp_path / "down", database, redis_url=nowhere) as portal:
        status, body = await ready(portal)
        assert (status, body["failed"]) == (503, ["redis"])
        assert body["checks"]["redis"].startswith("unavailable")
        assert "redis://" not in str(body) and REDIS_URL not in str(body)


async def test_no_enabled_specialist_is_not_ready(tmp_path: Path) -> None:
    off = tmp_path / "none.yaml"
    off.write_text(yaml.safe_dump({"specialists": [
        {"id": "66666666-6666-4666-8666-666666666666", "name": "off", "provider": "demo",
         "model": "x", "enabled": False},
    ]}))
    database = f"sqlite:///{tmp_path / 'usage.db'}"
    async with running_portal(tmp_path, database, specialists_file=off) as portal:
        status, body = await ready(portal)
        assert (status, body["failed"]) == (503, ["specialists"])
        assert body["checks"]["specialists"] == "none enabled"
