"""The rate-limiter contract: token buckets, one decision per request, any backend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from backend.errors import PortalError


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket to take a token from: its key, capacity and refill over a window."""

    key: str
    kind: str  # "ip" or "user": reported on records and decisions
    capacity: int
    window_seconds: float

    @property
    def refill_per_second(self) -> float:
        """Tokens added per second (the whole capacity over one window)."""
        return self.capacity / self.window_seconds


@dataclass(frozen=True, slots=True)
class BucketState:
    """What one bucket holds after a take (or a refused take)."""

    bucket: Bucket
    tokens: float
    allowed: bool

    @property
    def retry_after(self) -> float:
        """Seconds until one whole token is available (0 when one is)."""
        missing = 1.0 - self.tokens
        return 0.0 if missing <= 0 else missing / self.bucket.refill_per_second

    @property
    def reset_after(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.bucket.capacity - self.tokens) / self.bucket.refill_per_second)


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The decision for one request, from the strictest bucket; what the headers report."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float
    key_kind: str

    @classmethod
    def from_states(cls, states: Sequence[BucketState]) -> RateDecision:
        """Refused if any bucket refused; otherwise report the bucket with fewest tokens left."""
        refused = [s for s in states if not s.allowed]
        if refused:
            decisive = max(refused, key=lambda s: s.retry_after)
        else:
            decisive = min(states, key=lambda s: (s.tokens, -s.reset_after))
        return cls(
            allowed=not refused,
            limit=decisive.bucket.capacity,
            remaining=max(0, math.floor(decisive.tokens)),
            reset_after=decisive.reset_after,
            retry_after=decisive.retry_after,
            key_kind=decisive.bucket.kind,
        )

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The X-RateLimit-* headers (and Retry-After when refused), as raw ASGI pairs."""
        pairs = [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(math.ceil(self.reset_after)).encode()),
        ]
        if not self.allowed:
            # Whole seconds, rounded up, never 0 while limited.
            pairs.append((b"retry-after", str(max(1, math.ceil(self.retry_after))).encode()))
        return pairs


class RateLimiter(Protocol):
    """Takes one token from every bucket, or from none of them."""

    async def acquire(self, buckets: Sequence[Bucket]) -> RateDecision:
        """Atomically take a token from each bucket if all have one; report the decision."""
        ...

    async def close(self) -> None:
        """Release connections, if any."""
        ...


class RateLimitExceeded(PortalError):
    """The client is over its limit; the decision carries Retry-After."""

    code = "rate_limited"

    def __init__(self, decision: RateDecision) -> None:
        super().__init__(
            f"rate limit exceeded for this {decision.key_kind}: "
            f"{decision.limit} requests per window; retry in "
            f"{max(1, math.ceil(decision.retry_after))} s"
        )
        self.decision = decision
