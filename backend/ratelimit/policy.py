"""Which buckets a request draws from: its IP, its user, and per-specialist limits.

Every chat request takes one token from the client's IP bucket and, when it names a user,
from that user's bucket too; the stricter decides. A specialist with a limit of its own adds
the same pair again, keyed by the specialist and holding the specialist's capacity. The
general buckets still apply, so a specialist limit can only make that specialist stricter:
limits never add up to more than the general one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from backend.ratelimit.base import Bucket


class LimitOverride(BaseModel):
    """A named user's or specialist's own limit (settings JSON or the specialists file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests: Annotated[int, Field(gt=0)]
    # Unset: the window of the bucket kind it overrides.
    window_seconds: Annotated[float | None, Field(gt=0)] = None


@dataclass(frozen=True, slots=True)
class Limit:
    """A capacity and the time to refill it completely."""

    capacity: int
    window_seconds: float

    def overridden(self, override: LimitOverride) -> Limit:
        """This limit with an override's capacity and, if it sets one, its window."""
        return Limit(override.requests, override.window_seconds or self.window_seconds)


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """Capacities and windows per key kind, plus named overrides.

    `users` is keyed by the user's keyed email hash (never the email itself); `specialists`
    by the specialist's canonical UUID string.
    """

    ip: Limit
    user: Limit
    users: Mapping[str, Limit] = field(default_factory=dict)
    specialists: Mapping[str, Limit] = field(default_factory=dict)

    @property
    def needs_specialist(self) -> bool:
        """Whether the request's specialist changes its buckets (read the body only if so)."""
        return bool(self.specialists)

    def buckets(
        self, *, ip: str, user: str | None = None, specialist: str | None = None
    ) -> list[Bucket]:
        """The buckets one chat request takes a token from (all of them, or none)."""
        user_limit = self.users.get(user, self.user) if user else self.user
        buckets = [Bucket(f"ip:{ip}", "ip", self.ip.capacity, self.ip.window_seconds)]
        if user:
            buckets.append(
                Bucket(f"user:{user}", "user", user_limit.capacity, user_limit.window_seconds)
            )
        scoped = self._specialist(specialist)
        if scoped is not None:
            canonical, limit = scoped
            # The specialist id comes first and has a fixed length, so no client-chosen IP
            # spelling can collide with another bucket's key.
            buckets.append(
                Bucket(f"s:{canonical}:ip:{ip}", "ip", limit.capacity, limit.window_seconds,
                       specialist=canonical)
            )
            if user:
                buckets.append(
                    Bucket(f"s:{canonical}:user:{user}", "user", limit.capacity,
                           limit.window_seconds, specialist=canonical)
                )
        return buckets

    def _specialist(self, specialist: str | None) -> tuple[str, Limit] | None:
        if not specialist or not self.specialists:
            return None
        try:
            canonical = str(UUID(specialist))
        except (ValueError, TypeError):
            return None
        limit = self.specialists.get(canonical)
        return None if limit is None else (canonical, limit)


def build_policy(
    *,
    ip: Limit,
    user: Limit,
    user_overrides: Mapping[str, LimitOverride],
    specialist_overrides: Mapping[str, LimitOverride],
) -> RatePolicy:
    """A policy from already-hashed user keys and canonical specialist ids."""
    return RatePolicy(
        ip=ip,
        user=user,
        users={key: user.overridden(o) for key, o in user_overrides.items()},
        specialists={key: ip.overridden(o) for key, o in specialist_overrides.items()},
    )
