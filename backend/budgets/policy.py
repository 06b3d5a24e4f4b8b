"""Which budgets apply to a request, and their limits from settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from backend.auth.identity import Identity
from backend.budgets.base import Charge, Scope, to_nano
from backend.config.budgets import BudgetsConfig
from backend.usage.identity import hash_email

PORTAL = "portal"


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """The settings' limits (nano-USD) per scope; the admin API's values win in the store."""

    user_default: int | None = None
    users: Mapping[str, int] = field(default_factory=dict)  # by the user's keyed hash
    groups: Mapping[str, int] = field(default_factory=dict)
    cost_centers: Mapping[str, int] = field(default_factory=dict)
    specialists: Mapping[str, int] = field(default_factory=dict)
    portal: int | None = None

    @classmethod
    def from_settings(
        cls, budgets: BudgetsConfig, user_default: float | None, secret: bytes
    ) -> BudgetPolicy:
        """BUDGET_USER_USD and BUDGETS, with users' emails hashed (never kept raw)."""
        return cls(
            user_default=None if user_default is None else to_nano(user_default),
            users={hash_email(secret, e): to_nano(v) for e, v in budgets.users.items()},
            groups={g: to_nano(v) for g, v in budgets.groups.items()},
            cost_centers={c: to_nano(v) for c, v in budgets.cost_centers.items()},
            specialists={str(s): to_nano(v) for s, v in budgets.specialists.items()},
            portal=None if budgets.portal is None else to_nano(budgets.portal),
        )

    def any_limit(self) -> bool:
        """Whether settings set any budget at all."""
        return self.user_default is not None or self.portal is not None or bool(
            self.users or self.groups or self.cost_centers or self.specialists
        )

    def charges(self, identity: Identity | None, specialist_id: str) -> tuple[Charge, ...]:
        """Every budget the request counts against, limited or not (the API may add one)."""
        charges: list[Charge] = []
        if identity is not None and identity.user_hash is not None:
            user = identity.user_hash
            charges.append(Charge("user", user, self.users.get(user, self.user_default)))
        if identity is not None:
            charges += [Charge("group", g, self.groups.get(g)) for g in sorted(identity.groups)]
            if identity.cost_center:
                center = identity.cost_center
                charges.append(Charge("cost_center", center, self.cost_centers.get(center)))
        charges.append(Charge("specialist", specialist_id, self.specialists.get(specialist_id)))
        charges.append(Charge("portal", PORTAL, self.portal))
        return tuple(charges)

    def settings_limits(self) -> list[tuple[Scope, str, int]]:
        """The limits set in settings, for the admin listing (users by hash)."""
        rows: list[tuple[Scope, str, int]] = [("user", u, v) for u, v in self.users.items()]
        rows += [("group", g, v) for g, v in self.groups.items()]
        rows += [("cost_center", c, v) for c, v in self.cost_centers.items()]
        rows += [("specialist", s, v) for s, v in self.specialists.items()]
        if self.portal is not None:
            rows.append(("portal", PORTAL, self.portal))
        return rows
