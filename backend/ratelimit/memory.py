"""The in-process token-bucket backend: monotonic clock, lazy refill, bounded memory."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from backend.ratelimit.base import Bucket, BucketState, RateDecision


class MemoryRateLimiter:
    """Buckets in a dict, refilled lazily on each take; safe within one event loop.

    `acquire` never awaits between reading and writing its buckets, so concurrent requests
    in one loop cannot interleave inside it: the check and the take are one step. Buckets
    that are full again are forgotten (a missing bucket *is* a full one), which bounds
    memory by the clients active within one window. There is no background task: a sweep
    runs inline once enough takes have happened to pay for it (amortised O(1) per take).
    One process only: with several workers, use the Redis backend.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, sweep_every: int = 1024
    ) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float, float]] = {}  # key -> (tokens, at, full_at)
        self._sweep_every = sweep_every
        self._since_sweep = 0
        self._next_sweep = sweep_every

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
            # A refused take changes nothing: the lazy refill from the stored time is exact.
            states.append(BucketState(bucket, level, allowed))
        self._since_sweep += 1
        if self._since_sweep >= self._next_sweep:
            self._sweep(now)
        return RateDecision.from_states(states)

    async def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        """How many buckets are held (full ones are not)."""
        return len(self._buckets)

    def _level(self, bucket: Bucket, now: float) -> float:
        stored = self._buckets.get(bucket.key)
        if stored is None:
            return float(bucket.capacity)
        tokens, at, _ = stored
        return min(float(bucket.capacity), tokens + (now - at) * bucket.refill_per_second)

    def _sweep(self, now: float) -> None:
        self._since_sweep = 0
        for key in [k for k, (_, _, full_at) in self._buckets.items() if full_at <= now]:
            del self._buckets[key]
        # The next sweep waits for as many takes as buckets survived: amortised O(1).
        self._next_sweep = max(self._sweep_every, len(self._buckets))
