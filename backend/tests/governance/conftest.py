"""Fixtures for the governance tests: a portal with two admins, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from backend.tests.chat.conftest import Portal, portal_factory
from backend.tests.usage.conftest import database_url, engine
from backend.usage.identity import hash_email

__all__ = ["database_url", "engine", "portal_factory"]

ADMIN_GROUP = "portal-admins"
ALICE = {"X-User-Email": "alice@example.com", "X-User-Groups": ADMIN_GROUP}
BOB = {"X-User-Email": "bob@example.com", "X-User-Groups": ADMIN_GROUP}
CAROL = {"X-User-Email": "carol@example.com", "X-User-Groups": "staff"}
ALICE_HASH = hash_email(b"test-secret", "alice@example.com")
BOB_HASH = hash_email(b"test-secret", "bob@example.com")


def governed_settings(database_url: str, **overrides: Any) -> dict[str, Any]:
    """Header mode believing 127.0.0.1 (the tests' peer), admins by group, a fast poll."""
    values: dict[str, Any] = {
        "auth_mode": "header", "trusted_frontends": ["127.0.0.0/8"],
        "admin_groups": [ADMIN_GROUP], "database_url": database_url,
        "specialists_sync_seconds": 0.1,
    }
    values.update(overrides)
    return values


async def governed_portal(
    portal_factory: Callable[..., Awaitable[Portal]], database_url: str, **overrides: Any
) -> Portal:
    """A running portal with governance on `database_url`."""
    return await portal_factory(**governed_settings(database_url, **overrides))


def sha(text: str) -> str:
    """A prompt's hash, as usage rows carry it."""
    return hashlib.sha256(text.encode()).hexdigest()


async def chat(
    client: httpx.AsyncClient, specialist_id: str, headers: dict[str, str]
) -> httpx.Response:
    """One /chat/send."""
    return await client.post(
        "/chat/send", json={"specialist_id": specialist_id, "message": "hi"}, headers=headers
    )
