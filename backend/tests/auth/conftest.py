"""Fixtures for the identity tests: a local IdP, and a portal that trusts it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from backend.tests.auth import idp as idp_module
from backend.tests.auth.idp import AUDIENCE, IdP
from backend.tests.chat.conftest import Portal, portal_factory
from backend.tests.usage.conftest import database_url

__all__ = ["database_url", "portal_factory"]

RESTRICTED = "77777777-7777-4777-8777-777777777777"
ADMIN_GROUP = "portal-admins"


@pytest.fixture
async def idp() -> AsyncIterator[IdP]:
    """A running IdP with one RSA key."""
    async with idp_module.start() as provider:
        yield provider


def jwt_settings(provider: IdP, **overrides: Any) -> dict[str, Any]:
    """Portal settings for AUTH_MODE=jwt against `provider`, by discovery."""
    values: dict[str, Any] = {
        "auth_mode": "jwt", "oidc_issuer": provider.issuer, "jwt_audience": AUDIENCE,
        "admin_groups": [ADMIN_GROUP], "jwt_cost_center_claim": "cost_center",
    }
    values.update(overrides)
    return values


@pytest.fixture
async def jwt_portal(
    idp: IdP, portal_factory: Callable[..., Awaitable[Portal]]
) -> Portal:
    """A portal in jwt mode trusting `idp`."""
    return await portal_factory(**jwt_settings(idp))


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}
