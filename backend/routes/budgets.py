"""GET /me/budget (self-service) and the admin API over budgets: thin, over the ledger."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.api.deps import AdminDep, IdentityDep, ServicesDep
from backend.api.openapi import error_responses
from backend.auth.identity import Identity
from backend.budgets import journal
from backend.budgets.base import SCOPES, Scope, to_usd
from backend.budgets.errors import InvalidBudget
from backend.budgets.ledger import Ledger
from backend.budgets.policy import PORTAL
from backend.governance.audit import Actor, audited
from backend.usage.identity import hash_email

router = APIRouter(tags=["budgets"])
# The budgets themselves (absent, 404, while BUDGET_BACKEND=off) and the log of changes
# made through this API (kept, and readable, whether budgets are on or off).
admin_router = APIRouter(prefix="/admin/budgets", tags=["budgets"])
audit_router = APIRouter(prefix="/admin/budgets", tags=["budgets"])

_HASH = re.compile(r"^[0-9a-f]{64}$")

# In the path: the scope one of the five, the name 1-200 characters with one that is not a
# space; the portal's budget is named `portal` (a rule between two parameters: in words).
ScopePath = Annotated[Scope, Path(description="user, group, cost_center, specialist or portal")]
NamePath = Annotated[str, Path(
    min_length=1, max_length=200, pattern=r"\S",
    description="A user's email (kept as its keyed hash) or hash, a group, cost centre or "
    "specialist id; for scope `portal`, `portal`",
)]
_ADMIN = error_responses({
    400: "The body could not be parsed", 401: "No admin credentials",
    403: "Signed in, but not in ADMIN_GROUPS",
    404: "Budgets are off, or neither ADMIN_TOKEN nor ADMIN_GROUPS is set",
    422: "An invalid budget (a negative limit, a portal budget not named `portal`)",
    429: "Too many failed admin authentications (Retry-After)",
    503: "The budget store is unreachable",
})


class BudgetStatus(BaseModel):
    """One of the caller's budgets in the current period."""

    scope: Scope
    name: str | None = Field(description="None for the caller's own user budget")
    limit_usd: float
    spent_usd: float
    reserved_usd: float
    remaining_usd: float
    resets_at: datetime


class MyBudget(BaseModel):
    """The caller's budgets: what applies, what is spent, reserved and left, and the reset."""

    enabled: bool
    period: str | None = None
    budgets: list[BudgetStatus] = Field(default_factory=list)


class BudgetEntry(BaseModel):
    """A budget as configured: from settings, or set through this API (which wins)."""

    scope: Scope
    name: str = Field(description="A user is named by the keyed hash of their email")
    limit_usd: float
    source: str = Field(description="settings | api")
    updated_at: datetime | None = None
    updated_by: str | None = None


class BudgetList(BaseModel):
    """Every configured budget, the default per-user budget and the period."""

    period: str
    timezone: str
    user_default_usd: float | None
    budgets: list[BudgetEntry]


class BudgetChange(BaseModel):
    """PUT body: the scope's limit in USD per period."""

    # Strict, like every request body: `false` or "5" is refused, never read as a number.
    model_config = ConfigDict(strict=True)

    limit_usd: float = Field(ge=0, le=1_000_000_000)


class BudgetChanged(BaseModel):
    """What a PUT or DELETE changed (also written to the audit table)."""

    scope: Scope
    name: str
    old_usd: float | None
    new_usd: float | None


@router.get("/me/budget", response_model=MyBudget, responses=error_responses({
    401: "No valid token or key",
    503: "The budget store or the identity provider's keys cannot be had",
}))
async def my_budget(identity: IdentityDep, services: ServicesDep) -> MyBudget:
    """The caller's own budgets: limit, spent, reserved, remaining and reset time."""
    ledger = services.ledger
    if ledger is None:
        return MyBudget(enabled=False)
    period, states = await ledger.status(identity)
    return MyBudget(enabled=True, period=period.id, budgets=[
        BudgetStatus(
            scope=s.charge.scope, name=None if s.charge.scope == "user" else s.charge.name,
            limit_usd=to_usd(s.limit or 0), spent_usd=to_usd(s.spent),
            reserved_usd=to_usd(s.reserved), remaining_usd=to_usd(s.remaining or 0),
            resets_at=period.end,
        ) for s in states
    ])


async def _live_ledger(services: ServicesDep) -> Ledger:
    # A dependency, so that with budgets off the route is absent (404) before its
    # credentials or its body are looked at, as if it did not exist.
    if services.ledger is None:
        raise StarletteHTTPException(404, "budgets are off (BUDGET_BACKEND=off)")
    return services.ledger


LedgerDep = Annotated[Ledger, Depends(_live_ledger)]


@admin_router.get("", response_model=BudgetList, responses=_ADMIN)
async def list_budgets(ledger: LedgerDep, _: AdminDep, services: ServicesDep) -> BudgetList:
    """Every budget from settings and from this API (an API value wins for its scope)."""
    entries = {
        (scope, name): BudgetEntry(scope=scope, name=name, limit_usd=to_usd(v), source="settings")
        for scope, name, v in ledger.policy.settings_limits()
    }
    for row in await journal.limits(services.engine):
        entries[(row.scope, row.name)] = BudgetEntry(
            scope=row.scope, name=row.name, limit_usd=row.limit_usd, source="api",
            updated_at=row.updated_at, updated_by=row.updated_by,
        )
    default = ledger.policy.user_default
    settings = services.settings
    return BudgetList(
        period=settings.budget_period, timezone=settings.budget_timezone,
        user_default_usd=None if default is None else to_usd(default),
        budgets=sorted(entries.values(), key=lambda e: (e.scope, e.name)),
    )


@audit_router.get("/audit", responses=_ADMIN)
async def budget_audit(_: AdminDep, services: ServicesDep) -> list[dict[str, object]]:
    """The latest 200 changes made through this API: who, when, old and new value."""
    return await journal.audit(services.engine)


@admin_router.put("/{scope}/{name}", response_model=BudgetChanged, responses=_ADMIN)
async def put_budget(
    ledger: LedgerDep, scope: ScopePath, name: NamePath, change: BudgetChange,
    admin: AdminDep, services: ServicesDep, request: Request,
) -> BudgetChanged:
    """Set a scope's budget; it takes effect on every worker at once, and is audited."""
    return await _change(ledger, services, request, scope, name, change.limit_usd, admin)


@admin_router.delete("/{scope}/{name}", response_model=BudgetChanged, responses=_ADMIN)
async def delete_budget(
    ledger: LedgerDep, scope: ScopePath, name: NamePath, admin: AdminDep,
    services: ServicesDep, request: Request,
) -> BudgetChanged:
    """Drop the API's budget for a scope (a settings value, if any, applies again)."""
    return await _change(ledger, services, request, scope, name, None, admin)


async def _change(
    live: Ledger, services: ServicesDep, request: Request, scope: str, name: str,
    limit_usd: float | None, admin: Identity,
) -> BudgetChanged:
    request_id = getattr(request.state, "request_id", None)
    checked = _scope(scope)
    key = _name(checked, name, services.settings.hash_secret())
    action = "budget.delete" if limit_usd is None else "budget.set"
    audit = audited(Actor.of(admin), action, f"budget/{checked}/{key}", request_id)
    old, new = await live.set_limit(checked, key, limit_usd, _actor(admin), audit)
    return BudgetChanged(scope=checked, name=key, old_usd=old, new_usd=new)


def _scope(scope: str) -> Scope:
    for known in SCOPES:
        if scope == known:
            return known
    raise InvalidBudget(f"scope must be one of {', '.join(SCOPES)}")


def _name(scope: Scope, name: str, secret: bytes) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidBudget("a budget name is 1-200 characters")
    if scope == "portal" and name != PORTAL:
        raise InvalidBudget("the portal's budget is named 'portal'")
    if scope == "user" and not _HASH.match(name):
        # Kept (and audited) under the keyed hash: no raw email reaches the database.
        return hash_email(secret, name)
    return name


def _actor(admin: Identity) -> str:
    if admin.method == "admin_token":
        return "admin_token"
    return f"user:{admin.user_hash or admin.user_id or 'unknown'}"
