"""Fixtures for the usage tests: each test gets its own database, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.database.engine import make_engine
from backend.database.migrations import upgrade
from backend.tests.support import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each kind, owned by this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'usage.db'}"
        return
    async with postgres_database() as url:
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated database."""
    engine = make_engine(database_url, connect_timeout=3)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()
