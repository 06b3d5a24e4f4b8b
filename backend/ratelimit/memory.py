"""The in-process token-bucket backend: monotonic clock, lazy refill, bounded memory."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from backend.ratelimit.base import Bucket, BucketState, RateDecision


class MemoryRateLimiter:
    """Buckets in a dict, refilled lazily on each take; safe within one event loop.

    `acquire` never awaits between reading and writing a bucket, so concurrent requests
    in one loop cannot interleave inside it. Buckets that would be full again are
    forgotten (a missing bucket *is* a full one), which bounds memory by active clients.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, sweep_every: int = 1024) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float, float]] = {}  # key -> (tokens, at, full_at)
        self._sweep_every = sweep_every
        self._takes = 0

    async def acquire(self, buckets: Sequence[Bucket]) -> RateDecision:
        """Take one token from each bucket if every one has a whole token."""
        now = self._clock()
        levels = [self._level(bucket, now) for bucket in buckets]
        allowed = all(level >= 1.0 for level in levels)
        states = []
        for bucket, level in zip(buckets, levels, strict=True):
            if allowed:
                level -= 1.0
            full_at = now + (bucket.capacity - level) / bucket.refill_per_second
            self._buckets[bucket.key] = (level, now, full_at)
            states.append(BucketState(bucket, level, allowed))
        self._takes += 1
        if self._takes % self._sweep_every == 0:
            self._sweep(now)
        return RateDecision.from_states(states)

    async def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, bucket: Bucket, now: float) -> float:
        stored = self._buckets.get(bucket.key)
        if stored is None:
            return float(bucket.capacity)
        tokens, at, _ = stored
        return min(float(bucket.capacity), tokens + (now - at) * bucket.refill_per_second)

    def _sweep(self, now: float) -> None:
        for key in [k for k, (_, _, full_at) in self._buckets.items() if full_at <= now]:
            del self._buckets[key]
