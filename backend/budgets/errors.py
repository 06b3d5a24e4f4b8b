"""Budget refusals, in the service's error tree (statuses live in api/errors.py)."""

from __future__ import annotations

from datetime import datetime

from backend.budgets.base import ScopeState, to_usd
from backend.errors import InvalidRequest, PortalError


class BudgetExceeded(PortalError):
    """A budget that applies has no room for this request's worst case: nothing went upstream."""

    code = "budget_exceeded"

    def __init__(self, state: ScopeState, *, requested: int, resets_at: datetime) -> None:
        charge = state.charge
        named = "your user" if charge.scope == "user" else f"{charge.scope} {charge.name!r}"
        super().__init__(
            f"the {charge.scope} budget of {named} has no room for this request until "
            f"{resets_at.isoformat()}"
        )
        self.details: dict[str, object] = {
            "scope": charge.scope,
            # A user's budget is named by nobody's email: the caller knows it is theirs.
            "name": None if charge.scope == "user" else charge.name,
            "limit_usd": to_usd(state.limit or 0),
            "spent_usd": to_usd(state.spent),
            "reserved_usd": to_usd(state.reserved),
            "requested_usd": to_usd(requested),
            "resets_at": resets_at.isoformat(),
        }

    def body(self) -> dict[str, object]:
        """The error with the budget's scope, limit, spent, reserved and reset time."""
        return {**super().body(), **self.details}


class BudgetUnpriced(PortalError):
    """The model has no known price, so its worst case cannot be reserved on a budget."""

    code = "budget_unpriced"

    def __init__(self, provider: str, model: str) -> None:
        super().__init__(
            f"model {model!r} of provider {provider!r} has no known price and a budget "
            "applies: set its price in PRICE_OVERRIDES (or BUDGET_UNPRICED=allow)"
        )


class BudgetUnavailable(PortalError):
    """The budget store (Redis) did not answer; budgets fail closed."""

    code = "budget_unavailable"


class InvalidBudget(InvalidRequest):
    """An admin API budget call names an unknown scope or an impossible value."""

    code = "invalid_budget"
