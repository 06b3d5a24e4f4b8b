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
    specialist: str | None = None  # set when the bucket meters one specialist only

    @property
    def refill_per_second(self) -> float:
        """Tokens added per second (the whole capacity over one window)."""
        return self.capacity / self.window_seconds


# Not frozen, though never changed: built per request (see providers/base.py Usage).
@dataclass(slots=True)
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


# Not frozen, though never changed: built per request (see providers/base.py Usage).
@dataclass(slots=True)
class RateDecision:
    """The decision for one request, from the strictest bucket; what the headers report."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float
    key_kind: str
    specialist: str | None = None
    # The backend could not answer: allowed when failing open, refused when failing closed.
    unavailable: bool = False

    @classmethod
    def from_states(cls, states: Sequence[BucketState]) -> RateDecision:
        """Refused if any bucket refused; otherwise report the bucket with fewest tokens left."""
        refused = [s for s in states if not s.allowed]
        if refused:
            # The client must wait for every bucket: report the one that takes longest.
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
            specialist=decisive.bucket.specialist,
        )

    @classmethod
    def backend_unavailable(
        cls, buckets: Sequence[Bucket], *, fail_open: bool, retry_after: float
    ) -> RateDecision:
        """The decision when the backend cannot answer: nothing was counted.

        Remaining is reported as the full capacity because no token could be taken; the
        strictest (smallest) bucket is the one named.
        """
        strictest = min(buckets, key=lambda b: b.capacity)
        return cls(
            allowed=fail_open,
            limit=strictest.capacity,
            remaining=strictest.capacity if fail_open else 0,
            reset_after=0.0,
            retry_after=0.0 if fail_open else retry_after,
            key_kind=strictest.kind,
            specialist=strictest.specialist,
            unavailable=True,
        )

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The X-RateLimit-* headers (and Retry-After when refused), as raw ASGI pairs."""
        pairs = [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(math.ceil(self.reset_after)).encode()),
        ]
        if not self.allowed:
            pairs.append((b"retry-after", str(self.retry_after_seconds).encode()))
        return pairs

    @property
    def retry_after_seconds(self) -> int:
        """Retry-After as whole seconds, rounded up, never 0 while limited."""
        return max(1, math.ceil(self.retry_after))

    def refusal(self) -> PortalError | None:
        """The error a transport raises (or sends) for this decision; None when allowed."""
        if self.allowed:
            return None
        if self.unavailable:
            return RateLimiterUnavailable(self)
        return RateLimitExceeded(self)


class RateLimiter(Protocol):
    """Takes one token from every bucket, or from none of them."""

    async def acquire(self, buckets: Sequence[Bucket]) -> RateDecision:
        """Atomically take a token from each bucket if all have one; report the decision.

        Raises `BackendUnavailable` when the store cannot answer (never for a refusal).
        """
        ...

    async def close(self) -> None:
        """Release connections, if any."""
        ...


class BackendUnavailable(Exception):
    """The limiter's store did not answer in time; the gate fails open or closed."""


class RateLimitExceeded(PortalError):
    """The client is over its limit; the decision carries Retry-After."""

    code = "rate_limited"

    def __init__(self, decision: RateDecision) -> None:
        scope = " on this specialist" if decision.specialist else ""
        super().__init__(
            f"rate limit exceeded for this {decision.key_kind}{scope}: "
            f"{decision.limit} requests per window; retry in "
            f"{decision.retry_after_seconds} s"
        )
        self.decision = decision


class RateLimiterUnavailable(PortalError):
    """The shared rate-limit store is unreachable and the service is set to fail closed."""

    code = "rate_limiter_unavailable"

    def __init__(self, decision: RateDecision) -> None:
        super().__init__(
            "the rate limiter is unavailable, so the request was not served; "
            f"retry in {decision.retry_after_seconds} s"
        )
        self.decision = decision
