"""The in-process budget store: one worker's counters in dicts, exact within its event loop.

No method awaits between reading and writing, so concurrent requests in one loop cannot
interleave inside a reservation: the check and the reservation are one step, as in the
Redis scripts. One process only: with several workers, use the Redis store.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from backend.budgets.base import Admission, Charge, PeriodNotLoaded, ScopeState
from backend.budgets.periods import Period


@dataclass(slots=True)
class _Counter:
    spent: int = 0
    reserved: int = 0
    alerted: bool = False


# Not frozen, though never changed: built per request (see providers/base.py Usage).
@dataclass(slots=True)
class _Reservation:
    amount: int
    keys: tuple[tuple[str, str], ...]  # (period id, field)
    expires: float


class MemoryBudgetStore:
    """Counters per (period, scope) and open reservations, in this process only."""

    def __init__(
        self, *, alert_percent: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._alert_percent = alert_percent
        self._clock = clock
        self._counters: dict[tuple[str, str], _Counter] = {}
        self._limits: dict[str, int] = {}
        self._loaded: set[str] = set()
        self._open: dict[str, _Reservation] = {}
        self._expiry: list[tuple[float, str]] = []  # a heap of (expires at, reservation)

    async def reserve(
        self, period: Period, reservation: str, charges: Sequence[Charge], amount: int | None,
        *, ttl: float,
    ) -> Admission:
        """Reserve on every charge or none (see BudgetStore)."""
        if period.id not in self._loaded:
            raise PeriodNotLoaded(period.id)
        self._expire()
        # Counters and limits are read once; ScopeStates are built once, for the answer.
        keys = tuple((period.id, charge.field) for charge in charges)
        limits = [self._limits.get(charge.field, charge.limit) for charge in charges]
        if amount is None:
            if any(limit is not None for limit in limits):
                states = self._states(period, charges)
                refused = next(s for s in states if s.limit is not None)
                return Admission(False, states, refused=refused, unpriced=True)
            amount = 0
        counters = self._counters
        for index, (key, limit) in enumerate(zip(keys, limits, strict=True)):
            if limit is None:
                continue
            counter = counters.get(key)
            held = counter.spent + counter.reserved if counter is not None else 0
            if held + amount > limit:
                states = self._states(period, charges)
                return Admission(False, states, refused=states[index])
        after = []
        for key, limit, charge in zip(keys, limits, charges, strict=True):
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = _Counter()
            counter.reserved += amount
            after.append(ScopeState(charge, limit, counter.spent, counter.reserved))
        expires = self._clock() + ttl
        self._open[reservation] = _Reservation(amount, keys, expires)
        heapq.heappush(self._expiry, (expires, reservation))
        if len(self._expiry) > 2 * len(self._open) + 1024:
            # Settled reservations leave their heap entries behind: compact now and then.
            self._expiry = [(r.expires, key) for key, r in self._open.items()]
            heapq.heapify(self._expiry)
        return Admission(True, tuple(after))

    async def settle(
        self, period: Period, reservation: str, charges: Sequence[Charge], cost: int
    ) -> list[ScopeState]:
        """Drop the reservation and charge `cost` in `period` (see BudgetStore)."""
        return self.settle_now(period, reservation, charges, cost)

    def settle_now(
        self, period: Period, reservation: str, charges: Sequence[Charge], cost: int
    ) -> list[ScopeState]:
        """`settle`, at once: nothing here needs to wait."""
        self._drop(reservation)
        crossed = []
        counters = self._counters
        for charge in charges:
            key = (period.id, charge.field)
            counter = counters.get(key)
            if counter is None:  # not setdefault: that builds a _Counter on every call
                counter = counters[key] = _Counter()
            counter.spent += cost
            if counter.alerted:
                continue
            limit = self._limits.get(charge.field, charge.limit)
            alert_at = None if limit is None or limit <= 0 else limit * self._alert_percent
            if alert_at is not None and counter.spent * 100 >= alert_at:
                counter.alerted = True
                crossed.append(ScopeState(charge, limit, counter.spent, counter.reserved))
        return crossed

    async def states(self, period: Period, charges: Sequence[Charge]) -> list[ScopeState]:
        """The charges' counters (see BudgetStore)."""
        if period.id not in self._loaded:
            raise PeriodNotLoaded(period.id)
        return [self._state(period, charge) for charge in charges]

    async def set_limit(self, field: str, limit: int | None) -> None:
        """Set or drop an admin API limit."""
        if limit is None:
            self._limits.pop(field, None)
        else:
            self._limits[field] = limit

    async def load(
        self, period: Period, spent: Mapping[str, int], limits: Mapping[str, int]
    ) -> None:
        """Start the period from the usage table's sums; older periods are forgotten."""
        if period.id in self._loaded:
            return
        if not self._loaded:
            self._limits = dict(limits)
        # Keep only this period's counters: a reservation of the last one still finds its
        # key gone and simply has nothing to release there.
        self._counters = {k: c for k, c in self._counters.items() if k[0] == period.id}
        for field, nano in spent.items():
            self._counters.setdefault((period.id, field), _Counter()).spent += nano
        self._loaded = {period.id}

    async def close(self) -> None:
        """Nothing to release."""

    def open_reservations(self) -> int:
        """How many reservations are open (for tests and the health of the ledger)."""
        return len(self._open)

    def _states(self, period: Period, charges: Sequence[Charge]) -> tuple[ScopeState, ...]:
        return tuple(self._state(period, charge) for charge in charges)

    def _state(self, period: Period, charge: Charge) -> ScopeState:
        counter = self._counters.get((period.id, charge.field))
        limit = self._limits.get(charge.field, charge.limit)
        if counter is None:
            return ScopeState(charge, limit, 0, 0)
        return ScopeState(charge, limit, counter.spent, counter.reserved)

    def _drop(self, reservation: str) -> None:
        held = self._open.pop(reservation, None)
        if held is None:
            return  # expired already, or never made
        for key in held.keys:
            counter = self._counters.get(key)
            if counter is not None:
                counter.reserved = max(0, counter.reserved - held.amount)

    def _expire(self) -> None:
        now = self._clock()
        while self._expiry and self._expiry[0][0] <= now:
            expires, reservation = heapq.heappop(self._expiry)
            held = self._open.get(reservation)
            if held is not None and held.expires == expires:
                self._drop(reservation)
