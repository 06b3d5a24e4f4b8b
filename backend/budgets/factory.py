"""Build the ledger from settings: the store (in-process or Redis), the policy, the alerts."""

from __future__ import annotations

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.budgets.alerts import BudgetAlerts
from backend.budgets.base import BudgetStore
from backend.budgets.ledger import Ledger
from backend.budgets.memory import MemoryBudgetStore
from backend.budgets.policy import BudgetPolicy
from backend.budgets.redis import RedisBudgetStore
from backend.config.pricing import PriceBook
from backend.config.settings import Settings


async def build_ledger(
    settings: Settings, *, engine: AsyncEngine, prices: PriceBook,
    session: aiohttp.ClientSession,
) -> Ledger | None:
    """The ledger, its counters rebuilt from usage_log; None when BUDGET_BACKEND=off."""
    backend = settings.effective_budget_backend()
    if backend == "off":
        return None
    store: BudgetStore
    if backend == "redis":
        assert settings.redis_url is not None  # the settings refuse redis without a URL
        store = RedisBudgetStore(
            settings.redis_url, prefix=settings.budget_redis_prefix,
            alert_percent=settings.budget_alert_percent,
            timeout=settings.budget_redis_timeout_seconds,
        )
    else:
        store = MemoryBudgetStore(alert_percent=settings.budget_alert_percent)
    ledger = Ledger(
        store=store, engine=engine, prices=prices,
        policy=BudgetPolicy.from_settings(
            settings.budgets, settings.budget_user_usd, settings.hash_secret()
        ),
        alerts=BudgetAlerts(
            url=settings.budget_alert_webhook_url, session=session,
            percent=settings.budget_alert_percent,
        ),
        period=settings.budget_period, zone=settings.budget_timezone,
        unpriced_allowed=settings.budget_unpriced == "allow",
        reservation_ttl=settings.budget_reservation_ttl_seconds,
        message_overhead=settings.budget_message_overhead_tokens,
    )
    await ledger.start()
    return ledger
