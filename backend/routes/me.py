"""GET /me and GET /me/usage: who the portal thinks the caller is, and what they spent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from backend.api.deps import IdentityDep, ServicesDep, SettingsDep
from backend.api.openapi import error_responses
from backend.auth.errors import TokenMissing
from backend.auth.policy import is_admin
from backend.budgets.periods import Period, period_at
from backend.config.settings import Settings
from backend.errors import InvalidRequest
from backend.routes.usage import DateTimeText, SpendTotals, as_utc
from backend.usage.reports import own_totals

router = APIRouter(tags=["identity"])


class Me(BaseModel):
    """The caller's identity as verified (never the token that proved it)."""

    user_id: str | None = Field(description="The user id claim; the owner's hash for an API key")
    email: str | None
    name: str | None = Field(default=None, description="The display name (OIDC `name` claim)")
    groups: list[str]
    is_admin: bool
    cost_center: str | None
    auth_method: str = Field(description="none | header | jwt | session | api_key")
    expires_at: float | None = Field(description="When the proof expires (epoch seconds)")


@router.get("/me", response_model=Me, responses=error_responses({
    401: "No valid token or key", 503: "The identity provider's keys cannot be had",
}))
async def me(identity: IdentityDep, settings: SettingsDep) -> Me:
    """The caller's user id, email, groups, admin flag and cost centre."""
    return Me(
        user_id=identity.user_id, email=identity.email, name=identity.name,
        groups=sorted(identity.groups),
        is_admin=is_admin(identity, settings.admin_groups) and identity.method != "none",
        cost_center=identity.cost_center, auth_method=identity.method,
        expires_at=identity.expires_at,
    )


class MyUsage(SpendTotals):
    """The caller's own totals over [from, to): every request recorded under their identity."""

    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    period: str | None = Field(description=(
        "The period the range starts at when `from` is not given: the budget period's id "
        "(e.g. 2026-11, 2026-W45, 2026-11-03), or without budgets the calendar month in UTC; "
        "null when `from` is given"))


@router.get("/me/usage", response_model=MyUsage, responses=error_responses({
    401: "No identified caller: no valid token, key or session (in AUTH_MODE=none, no user "
    "email header)",
    422: "Bad `from` or `to`, or `from` not before `to`",
    503: "The identity provider's keys cannot be had",
}))
async def my_usage(
    identity: IdentityDep, services: ServicesDep,
    start: Annotated[DateTimeText | None, Query(
        alias="from", description="Start (inclusive), ISO 8601; no zone means UTC. Default: "
        "the start of the budget period (without budgets, the UTC calendar month) holding `to`",
    )] = None,
    end: Annotated[DateTimeText | None, Query(
        alias="to", description="End (exclusive), ISO 8601; no zone means UTC. Default: now",
    )] = None,
) -> MyUsage:
    """The caller's own requests, tokens in and out, and cost (by default, this period)."""
    if identity.user_hash is None:
        raise TokenMissing(
            "own usage needs an identified user (a token, key or session; in AUTH_MODE=none, "
            "the user email header)"
        )
    end_at = as_utc(end) if end else datetime.now(UTC)
    period: Period | None = None
    if start is None:
        period = _period(services.settings, budgets=services.ledger is not None, before=end_at)
        start_at = period.start
    else:
        start_at = as_utc(start)
    if start_at >= end_at:
        raise InvalidRequest("`from` must be before `to`")
    total = await own_totals(
        services.engine, user_hash=identity.user_hash, start=start_at, end=end_at
    )
    return MyUsage(
        start=start_at, end=end_at, period=period.id if period else None,
        requests=total.requests, failures=total.failures, input_tokens=total.input_tokens,
        output_tokens=total.output_tokens, cost_usd=total.cost_usd,
        unpriced_requests=total.unpriced_requests,
    )


def _period(settings: Settings, *, budgets: bool, before: datetime) -> Period:
    """The budget period (without budgets, the UTC calendar month) of the instant just
    before `before`: `to=2026-11-01` means October, the last period that range can hold."""
    kind, zone = (settings.budget_period, settings.budget_timezone) if budgets else ("month", "UTC")
    try:
        return period_at(before - timedelta(microseconds=1), kind, zone)
    except (OverflowError, ValueError):
        raise InvalidRequest("`to` is too near the ends of time to have a period") from None
