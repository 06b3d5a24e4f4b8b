"""The Redis budget store: counters shared by every worker, one Lua script per operation.

Each script is loaded once and called by its hash (NOSCRIPT: loaded again, as redis-py's
`Script` does). Scripts read the server's clock, so reservation expiry needs no agreement
between hosts' clocks. Keys (under BUDGET_REDIS_PREFIX):

  c:<period>:<scope>:<name>   hash {s: spent, r: reserved, a: alerted}, nano-USD
  loaded:<period>             set once the period's counters were rebuilt from usage_log
  limits                      hash <scope>:<name> -> nano-USD, the admin API's values
  res, resx                   open reservations (JSON) and their expiries (zset)

A reservation names the counters it holds, so the scripts touch keys they were not given:
this store is for a single Redis (or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from backend.budgets.base import Admission, Charge, PeriodNotLoaded, ScopeState, StoreUnavailable
from backend.budgets.periods import Period

_HERE = Path(__file__).parent
# Counters outlive their period by this much, so a late settlement still finds them.
COUNTER_GRACE_SECONDS = 2 * 86400


def _script(name: str, *, common: bool = False) -> str:
    text = (_HERE / name).read_text(encoding="utf-8")
    return (_HERE / "common.lua").read_text(encoding="utf-8") + text if common else text


class RedisBudgetStore:
    """Budgets in Redis, shared by every process that uses the same prefix."""

    def __init__(
        self, url: str, *, prefix: str, alert_percent: float, timeout: float = 1.0
    ) -> None:
        self._pool = BlockingConnectionPool.from_url(
            url, max_connections=32, timeout=timeout, socket_timeout=timeout,
            socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
        )
        self._redis = Redis(connection_pool=self._pool)
        self._prefix = prefix
        self._alert_percent = alert_percent
        self._timeout = timeout
        self._reserve = self._redis.register_script(_script("reserve.lua", common=True))
        self._settle = self._redis.register_script(_script("settle.lua", common=True))
        self._load = self._redis.register_script(_script("load.lua"))
        self._states = self._redis.register_script(_script("states.lua"))

    async def reserve(
        self, period: Period, reservation: str, charges: Sequence[Charge], amount: int | None,
        *, ttl: float,
    ) -> Admission:
        """Reserve on every charge or none, in one script call (see BudgetStore)."""
        keys = [self._loaded_key(period), self._key("limits"), self._key("res"),
                self._key("resx"), *(self._counter(period, c) for c in charges)]
        args: list[Any] = [reservation, -1 if amount is None else amount, ttl,
                           _counter_ttl(period), *_charge_args(charges)]
        reply = await self._call(self._reserve, keys, args)
        code, refused = int(reply[0]), int(reply[1])
        if code == -1:
            raise PeriodNotLoaded(period.id)
        states = _states(charges, reply[2:])
        if code == 1:
            return Admission(True, states)
        if code == -3:
            first = next(s for s in states if s.limit is not None)
            return Admission(False, states, refused=first, unpriced=True)
        return Admission(False, states, refused=states[refused - 1])

    async def settle(
        self, period: Period, reservation: str, charges: Sequence[Charge], cost: int
    ) -> list[ScopeState]:
        """Drop the reservation and charge `cost`, in one script call (see BudgetStore)."""
        keys = [self._key("limits"), self._key("res"), self._key("resx"),
                *(self._counter(period, c) for c in charges)]
        args: list[Any] = [reservation, cost, _counter_ttl(period), self._alert_percent,
                           *_charge_args(charges)]
        reply = await self._call(self._settle, keys, args)
        crossed = []
        for i in range(0, len(reply), 3):
            charge = charges[int(reply[i]) - 1]
            crossed.append(ScopeState(charge, int(reply[i + 1]), int(reply[i + 2]), 0))
        return crossed

    def settle_now(
        self, period: Period, reservation: str, charges: Sequence[Charge], cost: int
    ) -> None:
        """Settling needs a round trip to Redis: always None (the ledger awaits `settle`)."""
        return None

    async def states(self, period: Period, charges: Sequence[Charge]) -> list[ScopeState]:
        """The charges' counters and limits (see BudgetStore)."""
        keys = [self._loaded_key(period), self._key("limits"),
                *(self._counter(period, c) for c in charges)]
        reply = await self._call(self._states, keys, list(_charge_args(charges)))
        if int(reply[0]) == 0:
            raise PeriodNotLoaded(period.id)
        return list(_states(charges, reply[1:]))

    async def set_limit(self, field: str, limit: int | None) -> None:
        """Set or drop an admin API limit; every worker's next script call sees it."""
        try:
            async with asyncio.timeout(self._timeout):
                if limit is None:
                    await self._redis.hdel(self._key("limits"), field)
                else:
                    await self._redis.hset(self._key("limits"), field, limit)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc

    async def load(
        self, period: Period, spent: Mapping[str, int], limits: Mapping[str, int]
    ) -> None:
        """Start the period's counters from the journal's sums (a no-op once loaded)."""
        args: list[Any] = [
            max(1, int(period.seconds_left(datetime.now(UTC)))) + 60, _counter_ttl(period),
            len(limits),
        ]
        for field, nano in limits.items():
            args += [field, nano]
        for field, nano in spent.items():
            args += [self._key(f"c:{period.id}:{field}"), nano]
        await self._call(self._load, [self._loaded_key(period), self._key("limits")], args)

    async def close(self) -> None:
        """Close the client and its pooled connections."""
        await self._redis.aclose()
        await self._pool.disconnect()

    async def _call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc

    def _key(self, name: str) -> str:
        return self._prefix + name

    def _loaded_key(self, period: Period) -> str:
        return self._key(f"loaded:{period.id}")

    def _counter(self, period: Period, charge: Charge) -> str:
        return self._key(f"c:{period.id}:{charge.field}")


def _charge_args(charges: Sequence[Charge]) -> list[Any]:
    args: list[Any] = []
    for charge in charges:
        args += [charge.field, -1 if charge.limit is None else charge.limit]
    return args


def _states(charges: Sequence[Charge], values: Sequence[Any]) -> tuple[ScopeState, ...]:
    states = []
    for i, charge in enumerate(charges):
        limit, spent, reserved = (int(v) for v in values[3 * i: 3 * i + 3])
        states.append(ScopeState(charge, None if limit < 0 else limit, spent, reserved))
    return tuple(states)


def _counter_ttl(period: Period) -> int:
    return int(period.seconds_left(datetime.now(UTC))) + COUNTER_GRACE_SECONDS
