"""The budget settings' types: what BUDGETS may hold, and the start-up check of the time zone."""

from __future__ import annotations

from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

Usd = float


class BudgetsConfig(BaseModel):
    """BUDGETS: spend caps in USD per period, by scope (users by email; hashed at start-up)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: dict[str, Usd] = Field(default_factory=dict)
    groups: dict[str, Usd] = Field(default_factory=dict)
    cost_centers: dict[str, Usd] = Field(default_factory=dict)
    specialists: dict[UUID, Usd] = Field(default_factory=dict)
    portal: Usd | None = None

    def any(self) -> bool:
        """Whether any budget is set here."""
        return bool(
            self.users or self.groups or self.cost_centers or self.specialists
        ) or self.portal is not None


def check_budget_settings(settings: object) -> None:
    """Raise ValueError naming the variable when a budget setting cannot work."""
    zone = getattr(settings, "budget_timezone", "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"BUDGET_TIMEZONE: {zone!r} is not an IANA time zone") from None
    budgets: BudgetsConfig = getattr(settings, "budgets")  # noqa: B009
    values = [
        *budgets.users.values(), *budgets.groups.values(), *budgets.cost_centers.values(),
        *budgets.specialists.values(), *([budgets.portal] if budgets.portal is not None else []),
    ]
    if any(value < 0 for value in values):
        raise ValueError("BUDGETS: a budget must be 0 or more USD")
