"""The ledger over a real database: period rollover on an injected clock, and counters
rebuilt from usage_log (at start-up, and after Redis lost them) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth.identity import Identity
from backend.budgets.alerts import BudgetAlerts
from backend.budgets.base import BudgetStore, to_nano
from backend.budgets.errors import BudgetExceeded
from backend.budgets.ledger import Ledger, Quote, input_bound
from backend.budgets.memory import MemoryBudgetStore
from backend.budgets.periods import period_at
from backend.budgets.policy import BudgetPolicy
from backend.budgets.redis import RedisBudgetStore
from backend.config.pricing import PriceBook
from backend.database.engine import make_engine
from backend.database.migrations import upgrade
from backend.providers.base import CompletionRequest, Message
from backend.tests.support import postgres_database
from backend.tests.usage.helpers import make_record
from backend.usage.store import insert_batch

USER = Identity(method="header", email="a@x.com", user_hash="a" * 64,
                groups=frozenset({"eng", "ops"}), cost_center="cc-7")
REQUEST = CompletionRequest(model="m", messages=(Message("user", "hi"),), system="s",
                            max_output_tokens=100)
QUOTES = [Quote("openai", "m", 100)]
PRICES = PriceBook({"m": {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}})


class Clock:
    """Wall-clock time the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated database of each kind."""
    if request.param == "sqlite":
        built = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
        await upgrade(built)
        yield built
        await built.dispose()
        return
    async with postgres_database() as url:
        built = make_engine(url)
        await upgrade(built)
        yield built
        await built.dispose()


def ledger(store: BudgetStore, engine: AsyncEngine, session: aiohttp.ClientSession,
           clock: Clock, **policy: Any) -> Ledger:
    """A ledger with a 1 USD user budget unless `policy` says otherwise."""
    return Ledger(
        store=store, engine=engine, prices=PRICES,
        policy=BudgetPolicy(**{"user_default": to_nano(1.0), **policy}),
        alerts=BudgetAlerts(url=None, session=session, percent=80), period="day",
        zone="Europe/Berlin", unpriced_allowed=False, reservation_ttl=60, message_overhead=0,
        clock=clock,
    )


async def test_a_new_period_starts_empty_and_late_settlements_land_in_it(
    engine: AsyncEngine,
) -> None:
    # 23:30 in Berlin on 1 December: the day resets at midnight Berlin time.
    clock = Clock(datetime(2026, 12, 1, 22, 30, tzinfo=UTC))
    async with aiohttp.ClientSession() as session:
        book = ledger(MemoryBudgetStore(alert_percent=80), engine, session, clock)
        await book.start()
        worst = book.worst_case(REQUEST, QUOTES)
        assert worst == to_nano((3 + 100) * 1000 / 1e6)  # "s" + "hi" bytes, 100 output
        holds = [await book.reserve(identity=USER, specialist_id="sp", request=REQUEST,
                                    quotes=QUOTES) for _ in range(9)]
        with pytest.raises(BudgetExceeded) as refused:
            await book.reserve(identity=USER, specialist_id="sp", request=REQUEST, quotes=QUOTES)
        assert refused.value.details["resets_at"] == "2026-12-01T23:00:00+00:00"
        clock.now += timedelta(hours=1)  # 00:30 in Berlin: a new day
        book.settle(holds[0], 0.05)
        await book.close()  # waits for the settlement
        period, states = await book.status(USER)
        assert period.id == "2026-12-02"
        user = next(s for s in states if s.charge.scope == "user")
        assert (user.spent, user.reserved) == (to_nano(0.05), 0)
        # The other eight reservations belong to the old day: the new day has room again.
        await book.reserve(identity=USER, specialist_id="sp", request=REQUEST, quotes=QUOTES)


async def test_counters_are_rebuilt_from_usage_log_after_redis_loses_them(
    engine: AsyncEngine, redis_url: str, redis_prefix: str, redis_client: Redis,
) -> None:
    now = datetime.now(UTC)
    period = period_at(now, "day", "Europe/Berlin")
    await insert_batch(engine, [
        make_record(timestamp=now, user_email_hash=USER.user_hash, estimated_cost_usd=0.25,
                    cost_center="cc-7", user_groups='["eng", "ops"]', specialist_id="sp"),
        make_record(timestamp=now, user_email_hash="b" * 64, estimated_cost_usd=0.5,
                    user_groups='["eng"]', specialist_id="sp"),
        make_record(timestamp=period.start - timedelta(seconds=1),  # yesterday: not counted
                    user_email_hash=USER.user_hash, estimated_cost_usd=9.0),
        make_record(timestamp=now, user_email_hash=USER.user_hash, estimated_cost_usd=None),
    ])
    async with aiohttp.ClientSession() as session:
        store = RedisBudgetStore(redis_url, prefix=redis_prefix, alert_percent=80)
        book = ledger(store, engine, session, Clock(now), groups={"eng": to_nano(1.0)},
                      portal=to_nano(10.0), cost_centers={"cc-7": to_nano(1.0)})
        try:
            await book.start()
            expected = await _spent(book)
            assert expected == {"user": 0.25, "group": 0.75, "cost_center": 0.25, "portal": 0.75}
            keys = [k async for k in redis_client.scan_iter(match=f"{redis_prefix}*")]
            await redis_client.delete(*keys)  # Redis lost everything (FLUSHALL, a failover)
            assert await _spent(book) == expected  # rebuilt on the next use
            hold = await book.reserve(
                identity=USER, specialist_id="sp", request=REQUEST, quotes=QUOTES)
            book.settle(hold, 0.1)
        finally:
            await book.close()
        store = RedisBudgetStore(redis_url, prefix=redis_prefix, alert_percent=80)
        book = ledger(store, engine, session, Clock(now), groups={"eng": to_nano(1.0)})
        try:
            spent = await _spent(book)
            assert spent["user"] == pytest.approx(0.35) and spent["group"] == pytest.approx(0.85)
        finally:
            await book.close()


async def _spent(book: Ledger) -> dict[str, float]:
    _, states = await book.status(USER)
    return {s.charge.scope: round(s.spent / 1e9, 9) for s in states if s.charge.name != "ops"}


def test_the_input_bound_counts_utf8_bytes_of_every_message_and_the_system_prompt() -> None:
    # A token covers at least one UTF-8 byte: "é" is 2 bytes, the emoji 4, ASCII 1 each.
    request = CompletionRequest(
        model="m", system="sé", messages=(Message("user", "a😀"), Message("assistant", "ok")),
    )
    assert input_bound(request, 0) == 3 + 5 + 2
    assert input_bound(request, 16) == 3 + 5 + 2 + 16 * 3  # two messages and the system prompt
