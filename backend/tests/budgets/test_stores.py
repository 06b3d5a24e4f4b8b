"""The store contract, on both backends: all or none, expiry, alerts, API limits, loading."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from backend.budgets.base import BudgetStore, Charge, PeriodNotLoaded
from backend.budgets.memory import MemoryBudgetStore
from backend.budgets.periods import period_at
from backend.budgets.redis import RedisBudgetStore

PERIOD = period_at(datetime.now(UTC), "month", "UTC")
USER = Charge("user", "u1", 100)
GROUP = Charge("group", "eng", 250)
PORTAL = Charge("portal", "portal", None)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[BudgetStore]:
    """A loaded store of each backend (Redis under the test's own prefix)."""
    built: BudgetStore
    if request.param == "memory":
        built = MemoryBudgetStore(alert_percent=80)
    else:
        built = RedisBudgetStore(redis_url, prefix=redis_prefix, alert_percent=80)
    await built.load(PERIOD, {}, {})
    yield built
    await built.close()


async def test_a_reservation_is_made_on_every_budget_or_on_none(store: BudgetStore) -> None:
    first = await store.reserve(PERIOD, "r1", [USER, GROUP, PORTAL], 60, ttl=60)
    assert first.allowed and [s.reserved for s in first.states] == [60, 60, 60]
    assert first.tightest is not None and first.tightest.charge == USER
    # The user has 40 left: refused, and the group and portal are not charged either.
    second = await store.reserve(PERIOD, "r2", [GROUP, USER, PORTAL], 60, ttl=60)
    assert not second.allowed and second.refused is not None
    assert second.refused.charge == USER and second.refused.limit == 100
    states = await store.states(PERIOD, [USER, GROUP, PORTAL])
    assert [(s.spent, s.reserved) for s in states] == [(0, 60)] * 3


async def test_settling_replaces_the_reservation_by_the_cost(store: BudgetStore) -> None:
    await store.reserve(PERIOD, "r1", [USER, GROUP], 60, ttl=60)
    await store.settle(PERIOD, "r1", [USER, GROUP], 25)
    await store.settle(PERIOD, "r1", [USER, GROUP], 0)  # a second settle releases nothing more
    states = await store.states(PERIOD, [USER, GROUP])
    assert [(s.spent, s.reserved, s.remaining) for s in states] == [(25, 0, 75), (25, 0, 225)]
    released = await store.reserve(PERIOD, "r2", [USER], 75, ttl=60)
    assert released.allowed  # exactly what is left fits


async def test_the_alert_threshold_is_crossed_once_per_scope(store: BudgetStore) -> None:
    assert await store.settle(PERIOD, "a", [USER, GROUP], 70) == []
    crossed = await store.settle(PERIOD, "b", [USER, GROUP], 15)  # user at 85 of 100
    assert [(s.charge, s.limit, s.spent) for s in crossed] == [(USER, 100, 85)]
    assert await store.settle(PERIOD, "c", [USER, GROUP], 10) == []  # already alerted


async def test_an_api_limit_wins_over_the_settings_and_can_be_dropped(store: BudgetStore) -> None:
    await store.set_limit(USER.field, 10)
    refused = await store.reserve(PERIOD, "r1", [USER], 20, ttl=60)
    assert not refused.allowed and refused.refused is not None
    assert refused.refused.limit == 10
    await store.set_limit(PORTAL.field, 5)  # a scope with no settings budget gets one
    assert not (await store.reserve(PERIOD, "r2", [PORTAL], 6, ttl=60)).allowed
    await store.set_limit(USER.field, None)
    assert (await store.reserve(PERIOD, "r3", [USER], 20, ttl=60)).allowed


async def test_an_unknown_price_is_refused_only_where_a_budget_applies(
    store: BudgetStore,
) -> None:
    refused = await store.reserve(PERIOD, "r1", [USER, PORTAL], None, ttl=60)
    assert not refused.allowed and refused.unpriced
    free = await store.reserve(PERIOD, "r2", [PORTAL], None, ttl=60)
    assert free.allowed and free.states[0].reserved == 0


async def test_loading_adds_the_journal_once_per_period(store: BudgetStore) -> None:
    other = period_at(datetime(2020, 1, 15, tzinfo=UTC), "month", "UTC")
    with pytest.raises(PeriodNotLoaded):
        await store.reserve(other, "r1", [USER], 1, ttl=60)
    await store.load(other, {USER.field: 90}, {})
    await store.load(other, {USER.field: 90}, {})  # a second worker's rebuild: a no-op
    state = (await store.states(other, [USER]))[0]
    assert (state.spent, state.remaining) == (90, 10)


async def test_a_crashed_workers_reservation_expires_in_memory() -> None:
    clock = Clock()
    store = MemoryBudgetStore(alert_percent=80, clock=clock)
    await store.load(PERIOD, {}, {})
    assert (await store.reserve(PERIOD, "dead", [USER], 100, ttl=30)).allowed
    assert not (await store.reserve(PERIOD, "r2", [USER], 1, ttl=30)).allowed
    clock.now += 31  # nobody ever settles "dead"
    again = await store.reserve(PERIOD, "r3", [USER], 100, ttl=30)
    assert again.allowed and again.states[0].reserved == 100
    assert store.open_reservations() == 1


async def test_a_crashed_workers_reservation_expires_on_redis(
    redis_url: str, redis_prefix: str, redis_client: Redis
) -> None:
    store = RedisBudgetStore(redis_url, prefix=redis_prefix, alert_percent=80)
    try:
        await store.load(PERIOD, {}, {})
        assert (await store.reserve(PERIOD, "dead", [USER], 100, ttl=0.3)).allowed
        assert not (await store.reserve(PERIOD, "r2", [USER], 1, ttl=0.3)).allowed
        await asyncio.sleep(0.5)  # by Redis's own clock
        assert (await store.reserve(PERIOD, "r3", [USER], 100, ttl=30)).allowed
        assert await redis_client.hkeys(f"{redis_prefix}res") == ["r3"]
    finally:
        await store.close()


async def test_a_flushed_redis_reports_the_period_not_loaded(
    redis_url: str, redis_prefix: str, redis_client: Redis
) -> None:
    store = RedisBudgetStore(redis_url, prefix=redis_prefix, alert_percent=80)
    try:
        await store.load(PERIOD, {}, {"user:u1": 7})
        await store.settle(PERIOD, "x", [USER], 5)
        keys = [k async for k in redis_client.scan_iter(match=f"{redis_prefix}*")]
        await redis_client.delete(*keys)  # what FLUSHALL does to this test's keys
        with pytest.raises(PeriodNotLoaded):
            await store.reserve(PERIOD, "r1", [USER], 1, ttl=60)
        with pytest.raises(PeriodNotLoaded):
            await store.states(PERIOD, [USER])
    finally:
        await store.close()
