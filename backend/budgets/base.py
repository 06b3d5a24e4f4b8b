"""The budget contract: scopes, their counters, and the store every backend implements.

Money is counted in whole nano-dollars (1e-9 USD) so that every backend adds integers:
Redis's HINCRBY and Lua's numbers are exact to 2**53 nano-dollars (about USD 9 million).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from backend.budgets.periods import Period

Scope = Literal["user", "group", "cost_center", "specialist", "portal"]
SCOPES: tuple[Scope, ...] = ("user", "group", "cost_center", "specialist", "portal")
NANO = 1_000_000_000


def to_nano(usd: float) -> int:
    """USD as nano-dollars, rounded up: a reservation or a charge is never under-counted."""
    return math.ceil(round(usd * NANO, 3))


def to_usd(nano: int) -> float:
    """Nano-dollars as USD."""
    return nano / NANO


@dataclass(frozen=True, slots=True)
class Charge:
    """One budget a request counts against; `limit` is the settings' value (None: none)."""

    scope: Scope
    name: str  # the user's hash, the group, cost centre or specialist id, or "portal"
    limit: int | None  # nano-USD; a value set through the admin API wins over it
    # The scope's name in the store, without the period (limits are kept by it). Built once:
    # a request reads it a dozen times.
    field: str = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "field", f"{self.scope}:{self.name}")


# Not frozen, though never changed: built per request (see providers/base.py Usage).
@dataclass(slots=True)
class ScopeState:
    """A budget's counters in one period, as the store saw them."""

    charge: Charge
    limit: int | None  # in force: the API's value, else the settings'; None: no budget
    spent: int
    reserved: int

    @property
    def remaining(self) -> int | None:
        """What is left to reserve (never below 0); None without a budget."""
        if self.limit is None:
            return None
        return max(0, self.limit - self.spent - self.reserved)


# Not frozen, though never changed: built per request (see providers/base.py Usage).
@dataclass(slots=True)
class Admission:
    """A reservation's outcome: all budgets reserved, or none and the first without room."""

    allowed: bool
    states: tuple[ScopeState, ...]
    refused: ScopeState | None = None
    unpriced: bool = False  # refused: the price is unknown and a budget applies

    @property
    def tightest(self) -> ScopeState | None:
        """The applicable budget with the least left, or None when none applies."""
        limited = [s for s in self.states if s.limit is not None]
        return min(limited, key=lambda s: s.remaining or 0) if limited else None


class PeriodNotLoaded(Exception):
    """The store has no counters for this period yet (start-up, rollover, a lost Redis)."""


class StoreUnavailable(Exception):
    """The store did not answer; budgets fail closed."""


class BudgetStore(Protocol):
    """Counters per (period, scope), limits set at runtime, and open reservations."""

    async def reserve(
        self, period: Period, reservation: str, charges: Sequence[Charge], amount: int | None,
        *, ttl: float,
    ) -> Admission:
        """Reserve `amount` on every charge if all have room, else on none; `amount` None
        (an unknown price) is refused when any charge has a limit and admitted at 0 otherwise.

        Expired reservations are dropped first. Raises PeriodNotLoaded or StoreUnavailable.
        """
        ...

    async def settle(
        self, period: Period, reservation: str, charges: Sequence[Charge], cost: int
    ) -> list[ScopeState]:
        """Drop the reservation (wherever it was made) and add `cost` to the charges in
        `period`; returns the budgets that crossed the alert threshold for the first time."""
        ...

    def settle_now(
        self, period: Period, reservation: str, charges: Sequence[Charge], cost: int
    ) -> list[ScopeState] | None:
        """`settle` without awaiting, where the store needs no I/O; None where it does."""
        ...

    async def states(self, period: Period, charges: Sequence[Charge]) -> list[ScopeState]:
        """The charges' counters and limits, reserving nothing."""
        ...

    async def set_limit(self, field: str, limit: int | None) -> None:
        """Set (or, with None, drop) the admin API's limit for one scope, on every worker."""
        ...

    async def load(
        self, period: Period, spent: Mapping[str, int], limits: Mapping[str, int]
    ) -> None:
        """Start a period's counters from the usage table (a no-op if already loaded)."""
        ...

    async def close(self) -> None:
        """Release connections, if any."""
        ...
