"""Fixtures for the page tests: a running portal and a headless Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.tests.usage.portal import Portal, running_portal
from backend.tests.web.browser import chromium


@pytest.fixture
async def portal(tmp_path: Path) -> AsyncIterator[Portal]:
    """The real app on SQLite with the provider fakes; the demo answers a word at a time."""
    async with running_portal(
        tmp_path, f"sqlite:///{tmp_path / 'u.db'}", demo_chunk_delay_seconds=0.03
    ) as portal:
        yield portal


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium for this test."""
    async with chromium() as browser:
        yield browser
