"""A running portal for resilience tests: the three provider fakes, a stalling upstream, a
closed port, and specialists with fallbacks; fast retry settings unless a test overrides."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config.settings import Settings
from backend.database.engine import make_engine
from backend.tests.fakes import anthropic_fake, google_fake, openai_fake
from backend.tests.fakes.script import FakeState
from backend.tests.resilience import stall_fake
from backend.tests.support import make_settings, run_app
from backend.usage.table import usage_log

IDS = {
    "openai": "11111111-1111-4111-8111-111111111111",
    "anthropic": "22222222-2222-4222-8222-222222222222",
    "google": "33333333-3333-4333-8333-333333333333",
    "stall": "44444444-4444-4444-8444-444444444444",
    # openai, then a provider-and-model fallback on anthropic
    "openai_then_anthropic": "55555555-5555-4555-8555-555555555555",
    # anthropic, then the google specialist
    "anthropic_then_google": "66666666-6666-4666-8666-666666666666",
    # a server that refuses connections, then the openai specialist
    "refused_then_openai": "77777777-7777-4777-8777-777777777777",
}
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5", "google": "gemini-2.5-flash"}
BACKUP_MODEL = "claude-haiku-backup"
PROMPT = "You are the resilience test specialist."
KEYS = (openai_fake.API_KEY, anthropic_fake.API_KEY, google_fake.API_KEY)

# Fast and exact: tiny backoff without jitter, short bounds, no breaker unless asked.
FAST: dict[str, Any] = {
    "retry_max_attempts": 3,
    "retry_base_delay_seconds": 0.01,
    "retry_max_delay_seconds": 0.05,
    "retry_jitter": 0.0,
    "retry_after_cap_seconds": 1.0,
    "retry_budget_seconds": 10.0,
    "first_token_timeout_seconds": 2.0,
    "stream_idle_timeout_seconds": 2.0,
    "breaker_failure_threshold": 0,
    "sse_keepalive_seconds": 0.0,
    "rate_limit_requests": 100_000,
}


@dataclass
class Portal:
    """The running app, its fakes and a connection to its usage table."""

    client: httpx.AsyncClient
    fakes: dict[str, FakeState]
    stall: stall_fake.Stall
    settings: Settings
    engine: AsyncEngine

    async def usage_rows(self, specialist: str, count: int = 1) -> list[dict[str, Any]]:
        """The specialist's usage rows once there are `count` of them (the writer batches)."""
        query = (
            select(usage_log)
            .where(usage_log.c.specialist_id == IDS[specialist])
            .order_by(usage_log.c.id)
        )
        deadline = time.monotonic() + 5
        while True:
            async with self.engine.connect() as conn:
                rows = [dict(r._mapping) for r in await conn.execute(query)]
            if len(rows) >= count or time.monotonic() > deadline:
                assert len(rows) == count, rows
                return rows
            await asyncio.sleep(0.02)


def closed_port_url() -> str:
    """A base URL nothing listens on (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


def write_specialists(path: Path, stall_url: str) -> Path:
    """The specialists above, with their fallbacks."""

    def entry(key: str, provider: str, model: str, **extra: Any) -> dict[str, Any]:
        return {"id": IDS[key], "name": key, "provider": provider, "model": model,
                "system_prompt": PROMPT, **extra}

    entries = [entry(name, name, MODELS[name]) for name in MODELS]
    entries += [
        entry("stall", "openai_compatible", "stall-model", base_url=stall_url),
        entry("openai_then_anthropic", "openai", MODELS["openai"],
              fallbacks=[{"provider": "anthropic", "model": BACKUP_MODEL}]),
        entry("anthropic_then_google", "anthropic", MODELS["anthropic"],
              fallbacks=[{"specialist": IDS["google"]}]),
        entry("refused_then_openai", "openai_compatible", "nowhere",
              base_url=closed_port_url(), fallbacks=[{"specialist": IDS["openai"]}]),
    ]
    path.write_text(yaml.safe_dump({"specialists": entries}))
    return path


@pytest.fixture
async def portal_factory(tmp_path: Path) -> AsyncIterator[Any]:
    """Call with settings overrides to get a running `Portal`."""
    async with AsyncExitStack() as stack:

        async def build(**overrides: Any) -> Portal:
            openai_url, openai_state = await stack.enter_async_context(openai_fake.start())
            anthropic_url, anthropic_state = await stack.enter_async_context(anthropic_fake.start())
            google_url, google_state = await stack.enter_async_context(google_fake.start())
            stall_url, stall = await stack.enter_async_context(stall_fake.start())
            settings = make_settings(tmp_path, **{
                "openai_base_url": openai_url, "openai_api_key": openai_fake.API_KEY,
                "anthropic_base_url": anthropic_url, "anthropic_api_key": anthropic_fake.API_KEY,
                "google_base_url": google_url, "google_api_key": google_fake.API_KEY,
                "specialists_file": write_specialists(tmp_path / "specialists.yaml", stall_url),
                **FAST, **overrides,
            })
            engine = make_engine(settings.database_url)
            stack.push_async_callback(engine.dispose)
            url = await stack.enter_async_context(run_app(settings))
            client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=10))
            fakes = {"openai": openai_state, "anthropic": anthropic_state, "google": google_state}
            return Portal(client, fakes, stall, settings, engine)

        yield build


@pytest.fixture
async def portal(portal_factory: Any) -> Portal:
    """A portal on the fast settings."""
    result: Portal = await portal_factory()
    return result


def body(specialist: str, message: str = "What is 2 + 2?") -> dict[str, Any]:
    """A chat request for one of the specialists above."""
    return {"specialist_id": IDS[specialist], "message": message}


def assert_no_keys(text: str) -> None:
    """No provider key, whole or masked, in what a client or a log sees."""
    for key in KEYS:
        assert key not in text and key[-6:] not in text
