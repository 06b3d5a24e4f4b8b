"""A running portal wired to the three provider fakes, on the test's database, for usage tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config.settings import Settings
from backend.database.engine import make_engine
from backend.tests.fakes import anthropic_fake, google_fake, openai_fake
from backend.tests.fakes.script import FakeState
from backend.tests.support import make_settings, run_app
from backend.tests.usage.helpers import ADMIN_TOKEN

SPECIALISTS = {
    "openai": "11111111-1111-4111-8111-111111111111",
    "anthropic": "22222222-2222-4222-8222-222222222222",
    "google": "33333333-3333-4333-8333-333333333333",
    "demo": "44444444-4444-4444-8444-444444444444",
}
MODELS = {
    "openai": "gpt-4o",
    "anthropic": "claude-sonnet-4-5",
    "google": "gemini-2.5-flash",
    "demo": "demo-echo",
}


@dataclass
class Portal:
    """The app's URL and client, the fakes' states, its settings and a engine on its database."""

    url: str
    client: httpx.AsyncClient
    fakes: dict[str, FakeState]
    settings: Settings
    engine: AsyncEngine


def _write_specialists(path: Path) -> Path:
    entries = [
        {
            "id": SPECIALISTS[name], "name": f"{name} specialist", "provider": name,
            "model": MODELS[name], "system_prompt": "You are the usage test specialist.",
            "version": 3,
        }
        for name in SPECIALISTS
    ]
    path.write_text(yaml.safe_dump({"specialists": entries}))
    return path


def _known(values: dict[str, Any]) -> dict[str, Any]:
    # Settings from work in flux elsewhere (retries) are passed only when they exist.
    return {k: v for k, v in values.items() if k in Settings.model_fields}


@asynccontextmanager
async def running_portal(
    tmp_path: Path, database_url: str, *, sock: socket.socket | None = None, **overrides: Any
) -> AsyncIterator[Portal]:
    """Start the fakes and the real app (uvicorn on 127.0.0.1) on `database_url`."""
    async with AsyncExitStack() as stack:
        openai_url, openai_state = await stack.enter_async_context(openai_fake.start())
        anthropic_url, anthropic_state = await stack.enter_async_context(anthropic_fake.start())
        google_url, google_state = await stack.enter_async_context(google_fake.start())
        values: dict[str, Any] = {
            "database_url": database_url,
            "openai_base_url": openai_url, "openai_api_key": openai_fake.API_KEY,
            "anthropic_base_url": anthropic_url, "anthropic_api_key": anthropic_fake.API_KEY,
            "google_base_url": google_url, "google_api_key": google_fake.API_KEY,
            "specialists_file": _write_specialists(tmp_path / "specialists.yaml"),
            "admin_token": ADMIN_TOKEN,
            "usage_flush_interval_seconds": 0.01,
            "usage_retry_max_seconds": 0.2,
            "rate_limit_requests": 100_000,
            **_known({"retry_max_attempts": 1, "breaker_failure_threshold": 0}),
        }
        values.update(overrides)
        settings = make_settings(tmp_path, **values)
        engine = make_engine(database_url)
        stack.push_async_callback(engine.dispose)
        url = await stack.enter_async_context(run_app(settings, sock))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=20))
        fakes = {"openai": openai_state, "anthropic": anthropic_state, "google": google_state}
        yield Portal(url, client, fakes, settings, engine)


def chat_body(provider: str, message: str = "How much is 2 + 2?") -> dict[str, Any]:
    """A chat request for the provider's specialist."""
    return {"specialist_id": SPECIALISTS[provider], "message": message}
