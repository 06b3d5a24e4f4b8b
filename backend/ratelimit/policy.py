"""Which buckets a request draws from: today, one per client IP."""

from __future__ import annotations

from dataclasses import dataclass

from backend.ratelimit.base import Bucket


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """Capacities and windows per key kind."""

    ip_capacity: int
    ip_window_seconds: float

    def buckets(self, *, ip: str, user: str | None = None) -> list[Bucket]:
        """The buckets one chat request takes a token from."""
        return [Bucket(f"ip:{ip}", "ip", self.ip_capacity, self.ip_window_seconds)]
