"""The ledger: where money is counted (STYLE 14). Admission reserves a request's worst case,
priced from the price table, on every budget that applies; the end of the interaction
replaces it by its usage record's cost. Counters are a cache of usage_log, rebuilt from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth.identity import Identity
from backend.budgets import journal
from backend.budgets.alerts import BudgetAlerts
from backend.budgets.base import (
    BudgetStore,
    Charge,
    PeriodNotLoaded,
    Scope,
    ScopeState,
    StoreUnavailable,
    to_nano,
    to_usd,
)
from backend.budgets.errors import BudgetExceeded, BudgetUnavailable, BudgetUnpriced
from backend.budgets.periods import Period, PeriodKind, period_at
from backend.budgets.policy import BudgetPolicy
from backend.config.pricing import PriceBook
from backend.database.audit_hook import AuditHook
from backend.providers.base import CompletionRequest, Usage
from backend.usage.ids import new_id

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long close() waits for settlements still on their way to the store.
DRAIN_SECONDS = 5.0
# How many requesters' charges are kept built.
CHARGES_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class Quote:
    """One way the request may be answered (the specialist, or a fallback) and its bound."""

    provider: str
    model: str
    max_output_tokens: int


@dataclass(slots=True)
class BudgetNote:
    """What a chat response reports: the tightest applicable budget's remaining USD."""

    remaining_usd: float | None = None

    def header(self) -> tuple[bytes, bytes] | None:
        """X-Budget-Remaining-USD, when a budget applies."""
        if self.remaining_usd is None:
            return None
        return b"x-budget-remaining-usd", f"{self.remaining_usd:.6f}".encode()


@dataclass(slots=True)
class Hold:
    """A reservation made at admission; settled exactly once."""

    reservation: str
    charges: tuple[Charge, ...]
    amount: int
    settled: bool = False


def input_bound(request: CompletionRequest, overhead: int) -> int:
    """Input tokens the provider cannot exceed: a token covers at least one UTF-8 byte, and
    each message (and the system prompt) gets `overhead` tokens for its role and framing."""
    total = _utf8_length(request.system) if request.system else 0
    total += sum(_utf8_length(m.content) for m in request.messages)
    return total + overhead * (len(request.messages) + 1)


def _utf8_length(text: str) -> int:
    # isascii() reads a flag CPython keeps on every str: ASCII text needs no encoded copy.
    return len(text) if text.isascii() else len(text.encode())


class Ledger:
    """Reserves, settles and reports budgets over one store (in-process or Redis)."""

    def __init__(
        self, *, store: BudgetStore, engine: AsyncEngine, policy: BudgetPolicy,
        prices: PriceBook, alerts: BudgetAlerts, period: PeriodKind, zone: str,
        unpriced_allowed: bool, reservation_ttl: float, message_overhead: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self._engine = engine
        self.policy = policy
        self._prices = prices
        self._alerts = alerts
        self._kind: PeriodKind = period
        self._zone = zone
        self._unpriced_allowed = unpriced_allowed
        self._ttl = reservation_ttl
        self._overhead = message_overhead
        self._clock = clock
        self._loading = asyncio.Lock()
        self._settling: set[asyncio.Task[None]] = set()
        self._period: Period | None = None
        # Whether any budget set through the API is known to exist (from the database at
        # each rebuild, from this worker's changes, from the store's answers).
        self._limits_known = False
        # The charges of each (user, groups, cost centre, specialist) seen: the policy never
        # changes, and building them is a fifth of a reservation's CPU.
        self._charges: dict[tuple[object, ...], tuple[Charge, ...]] = {}

    def period(self) -> Period:
        """The budget period now (computed again only once the last one has ended)."""
        now = self._clock()
        current = self._period
        if current is None or not current.start <= now < current.end:
            current = self._period = period_at(now, self._kind, self._zone)
        return current

    async def start(self) -> None:
        """Rebuild the current period's counters from usage_log (a lost Redis waits)."""
        try:
            await self._load(self.period())
        except BudgetUnavailable as exc:
            log.warning("budgets: counters not loaded at start-up (%s); requests will retry", exc)

    def worst_case(self, request: CompletionRequest, quotes: Sequence[Quote]) -> int | None:
        """The most this request can cost on any of its routes (nano-USD); None: unpriced."""
        tokens = input_bound(request, self._overhead)
        worst = 0
        for quote in quotes:
            usage = Usage(input_tokens=tokens, output_tokens=quote.max_output_tokens)
            cost = self._prices.estimate(quote.provider, quote.model, usage)
            if cost is None:
                return None
            worst = max(worst, to_nano(cost))
        return worst

    async def reserve(
        self, *, identity: Identity | None, specialist_id: str, request: CompletionRequest,
        quotes: Sequence[Quote], note: BudgetNote | None = None,
    ) -> Hold | None:
        """Reserve the worst case on every applicable budget at once, or raise (402/503).

        None: the store is unreachable and no budget is known to exist, so none is enforced.
        """
        charges = self._charges_of(identity, specialist_id)
        amount = self.worst_case(request, quotes)
        if amount is None and self._unpriced_allowed:
            amount = 0  # counted at the record's cost, which is unknown: nothing
        period = self.period()
        reservation = new_id()  # unique across workers and hosts, as a uuid4
        try:
            admission = await self._with_period(
                period, lambda: self.store.reserve(
                    period, reservation, charges, amount, ttl=self._ttl)
            )
        except BudgetUnavailable:
            if self._limits_known or self.policy.any_limit():
                raise  # a budget exists: fail closed
            # No budget exists anywhere we know of (a REDIS_URL set for rate limits only):
            # nothing to enforce, and the usage row still counts at the next rebuild.
            return None
        if not self._limits_known:
            self._limits_known = any(s.limit is not None for s in admission.states)
        tightest = admission.tightest
        if note is not None and tightest is not None:
            note.remaining_usd = to_usd(tightest.remaining or 0)
        if admission.unpriced:
            unpriced = next(
                q for q in quotes if self._prices.estimate(q.provider, q.model, Usage(0, 1)) is None
            )
            raise BudgetUnpriced(unpriced.provider, unpriced.model)
        if not admission.allowed:
            assert admission.refused is not None
            raise BudgetExceeded(admission.refused, requested=amount or 0, resets_at=period.end)
        return Hold(reservation, charges, amount or 0)

    def settle(self, hold: Hold | None, cost_usd: float | None) -> None:
        """Replace the reservation by the usage record's cost (unknown or 0: released).

        Never raises and never blocks: called where the usage record is made, however the
        interaction ended; the store is updated by a task that close() waits for.
        """
        if hold is None or hold.settled:
            return
        hold.settled = True
        cost = 0 if cost_usd is None else to_nano(cost_usd)
        if cost > hold.amount:
            log.warning("budgets: a request cost %d nano-USD over its reservation",
                        cost - hold.amount)
        period = self.period()
        crossed = self.store.settle_now(period, hold.reservation, hold.charges, cost)
        if crossed is not None:  # in-process: done, no task needed
            for state in crossed:
                self._alerts.crossed(state, period)
            return
        task = asyncio.create_task(self._settle(hold, cost))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def status(self, identity: Identity) -> tuple[Period, list[ScopeState]]:
        """The caller's own budgets (those with a limit) in the current period."""
        period = self.period()
        charges = [c for c in self.policy.charges(identity, "") if c.scope != "specialist"]
        states = await self._with_period(period, lambda: self.store.states(period, charges))
        return period, [s for s in states if s.limit is not None]

    async def set_limit(
        self, scope: Scope, name: str, limit_usd: float | None, actor: str,
        audit: AuditHook | None = None,
    ) -> tuple[float | None, float | None]:
        """Store an admin API limit in the database (audited), then in the shared store."""
        try:
            old, new = await journal.set_limit(
                self._engine, scope=scope, name=name, limit_usd=limit_usd, actor=actor,
                audit=audit,
            )
        except (SQLAlchemyError, OSError) as exc:
            raise BudgetUnavailable(f"database: {type(exc).__name__}") from exc
        self._limits_known = self._limits_known or new is not None
        try:
            await self.store.set_limit(f"{scope}:{name}", None if new is None else to_nano(new))
        except StoreUnavailable as exc:
            raise BudgetUnavailable(f"saved, but not yet in force: {exc}") from exc
        return old, new

    async def close(self) -> None:
        """Wait (bounded) for settlements in flight, then close the store and the alerts."""
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=DRAIN_SECONDS)
        await self._alerts.close()
        await self.store.close()

    def _charges_of(self, identity: Identity | None, specialist_id: str) -> tuple[Charge, ...]:
        key = (specialist_id,) if identity is None else (
            specialist_id, identity.user_hash, identity.groups, identity.cost_center
        )
        charges = self._charges.get(key)
        if charges is None:
            if len(self._charges) >= CHARGES_CACHED:
                self._charges.clear()  # bounded: a burst of new users cannot grow it
            charges = self._charges[key] = self.policy.charges(identity, specialist_id)
        return charges

    async def _settle(self, hold: Hold, cost: int) -> None:
        period = self.period()
        try:
            crossed = await self.store.settle(period, hold.reservation, hold.charges, cost)
        except StoreUnavailable as exc:
            # The usage row still holds the cost; the reservation expires on its own.
            log.warning("budgets: settlement not recorded in the store (%s)", exc)
            return
        for state in crossed:
            self._alerts.crossed(state, period)

    async def _with_period(self, period: Period, call: Callable[[], Awaitable[T]]) -> T:
        try:
            try:
                return await call()
            except PeriodNotLoaded:
                await self._load(period)
                return await call()
        except StoreUnavailable as exc:
            raise BudgetUnavailable(
                "budgets cannot be checked right now, so the request was not served"
            ) from exc
        except PeriodNotLoaded as exc:
            raise BudgetUnavailable("budget counters could not be loaded") from exc

    async def _load(self, period: Period) -> None:
        async with self._loading:  # one rebuild per process at a time
            try:
                spent = await journal.spent_in(self._engine, period)
                limits = {f"{r.scope}:{r.name}": to_nano(r.limit_usd)
                          for r in await journal.limits(self._engine)}
                self._limits_known = self._limits_known or bool(limits)
            except (SQLAlchemyError, OSError) as exc:
                raise BudgetUnavailable(f"usage_log unreadable: {type(exc).__name__}") from exc
            try:
                await self.store.load(period, spent, limits)
            except StoreUnavailable as exc:
                raise BudgetUnavailable(str(exc)) from exc
            log.info("budgets: %s counters rebuilt from usage_log (%d scopes)",
                     period.id, len(spent))
