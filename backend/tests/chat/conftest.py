"""A portal wired to all three provider fakes, with one specialist per provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from backend.tests.fakes import anthropic_fake, google_fake, openai_fake
from backend.tests.fakes.script import FakeState
from backend.tests.support import make_settings, run_app

SPECIALISTS = {
    "openai": "11111111-1111-4111-8111-111111111111",
    "anthropic": "22222222-2222-4222-8222-222222222222",
    "google": "33333333-3333-4333-8333-333333333333",
    "demo": "44444444-4444-4444-8444-444444444444",
    "openai_compatible": "55555555-5555-4555-8555-555555555555",
}
DISABLED = "66666666-6666-4666-8666-666666666666"
MODELS = {
    "openai": "gpt-4o",
    "anthropic": "claude-sonnet-4-5",
    "google": "gemini-2.5-flash",
    "demo": "demo-echo",
    "openai_compatible": "llama3.1",
}
SYSTEM_PROMPT = "You are the test specialist."
UPSTREAMS = ("openai", "anthropic", "google")


@dataclass
class Portal:
    """The running app and its fakes."""

    url: str
    fakes: dict[str, FakeState]
    settings: Any
    client: httpx.AsyncClient = field(init=False)


def write_specialists(path: Path, compatible_url: str) -> Path:
    """A specialists file with one enabled specialist per provider and one disabled."""
    entries: list[dict[str, Any]] = [
        {
            "id": SPECIALISTS[name],
            "name": f"{name} specialist",
            "provider": name,
            "model": MODELS[name],
            "system_prompt": SYSTEM_PROMPT,
            "temperature": 0.5,
            "max_output_tokens": 256,
        }
        for name in ("openai", "anthropic", "google", "demo")
    ]
    entries.append(
        {
            "id": SPECIALISTS["openai_compatible"],
            "name": "compatible",
            "model": "llama3.1",
            "provider": "openai_compatible",
            "base_url": compatible_url,
            "system_prompt": SYSTEM_PROMPT,
        }
    )
    entries.append(
        {"id": DISABLED, "name": "off", "provider": "demo", "model": "x", "enabled": False}
    )
    path.write_text(yaml.safe_dump({"specialists": entries}))
    return path


@pytest.fixture
async def portal_factory(tmp_path: Path) -> AsyncIterator[Any]:
    """Call with settings overrides to get a running `Portal` (fakes included)."""
    async with AsyncExitStack() as stack:

        async def build(**overrides: Any) -> Portal:
            openai_url, openai_state = await stack.enter_async_context(openai_fake.start())
            compat_url, compat_state = await stack.enter_async_context(
                openai_fake.start(require_auth=False)
            )
            anthropic_url, anthropic_state = await stack.enter_async_context(anthropic_fake.start())
            google_url, google_state = await stack.enter_async_context(google_fake.start())
            values: dict[str, Any] = {
                "openai_base_url": openai_url,
                "openai_api_key": openai_fake.API_KEY,
                "anthropic_base_url": anthropic_url,
                "anthropic_api_key": anthropic_fake.API_KEY,
                "google_base_url": google_url,
                "google_api_key": google_fake.API_KEY,
                "specialists_file": write_specialists(tmp_path / "specialists.yaml", compat_url),
            }
            values.update(overrides)
            settings = make_settings(tmp_path, **values)
            url = await stack.enter_async_context(run_app(settings))
            portal = Portal(
                url,
                {
                    "openai": openai_state,
                    "anthropic": anthropic_state,
                    "google": google_state,
                    "openai_compatible": compat_state,
                },
                settings,
            )
            portal.client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=10)
            )
            return portal

        yield build


@pytest.fixture
async def portal(portal_factory: Any) -> Portal:
    """A portal on default test settings."""
    result: Portal = await portal_factory()
    return result
