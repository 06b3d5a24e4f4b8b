"""The gate every transport calls: keys from the connection, counters, fail open or closed."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from backend.ratelimit.base import (
    BackendUnavailable,
    Bucket,
    RateDecision,
    RateLimiterUnavailable,
    RateLimitExceeded,
)
from backend.ratelimit.gate import RateLimits
from backend.ratelimit.keys import parse_networks
from backend.ratelimit.memory import MemoryRateLimiter
from backend.ratelimit.policy import Limit, build_policy

POLICY = build_policy(ip=Limit(2, 60), user=Limit(5, 60), user_overrides={},
                      specialist_overrides={})


class FlakyLimiter:
    """A store that is down while `down` is set, and a memory limiter otherwise."""

    def __init__(self) -> None:
        self.down = False
        self.inner = MemoryRateLimiter()
        self.seen: list[list[str]] = []

    async def acquire(self, buckets: Sequence[Bucket]) -> RateDecision:
        self.seen.append([b.key for b in buckets])
        if self.down:
            raise BackendUnavailable("connection refused")
        return await self.inner.acquire(buckets)

    async def close(self) -> None:
        pass


async def test_refusals_are_counted_and_raise_rate_limit_exceeded() -> None:
    gate = RateLimits(MemoryRateLimiter(), POLICY)
    decisions = [await gate.decide(peer="203.0.113.5") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert isinstance(decisions[-1].refusal(), RateLimitExceeded)
    assert gate.snapshot() == {
        "backend": "memory", "fail_open": True,
        "admitted": 2, "rejected": 1, "failed_open": 0, "failed_closed": 0,
    }


async def test_keys_come_from_the_peer_unless_it_is_a_trusted_proxy() -> None:
    limiter = FlakyLimiter()
    gate = RateLimits(limiter, POLICY, trusted_proxies=parse_networks(["10.0.0.0/8"]))
    await gate.decide(peer="203.0.113.5", forwarded_for=["198.51.100.1"])
    await gate.decide(peer="10.0.0.1", forwarded_for=["198.51.100.1, 203.0.113.9"], user="h")
    assert limiter.seen == [["ip:203.0.113.5"], ["ip:203.0.113.9", "user:h"]]


async def test_fail_open_serves_counts_and_warns_once_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = FlakyLimiter()
    gate = RateLimits(limiter, POLICY, fail_open=True)
    limiter.down = True
    with caplog.at_level(logging.WARNING, logger="backend.ratelimit.gate"):
        decisions = [await gate.decide(peer="203.0.113.5", user="h") for _ in range(5)]
        limiter.down = False
        recovered = await gate.decide(peer="203.0.113.5")
    # Served although the bucket of 2 would have refused the third.
    assert all(d.allowed and d.unavailable and d.refusal() is None for d in decisions)
    assert decisions[0].limit == 2  # the strictest bucket's capacity, nothing counted
    assert gate.stats.failed_open == 5 and gate.stats.admitted == 1
    assert recovered.allowed and not recovered.unavailable
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "unreachable" in messages[0] and "open" in messages[0]
    assert "answers again; 5 requests were served" in messages[1]


async def test_fail_closed_refuses_with_503_error_and_retry_after() -> None:
    limiter = FlakyLimiter()
    limiter.down = True
    gate = RateLimits(limiter, POLICY, fail_open=False)
    decision = await gate.decide(peer="203.0.113.5")
    assert not decision.allowed and decision.unavailable
    refusal = decision.refusal()
    assert isinstance(refusal, RateLimiterUnavailable)
    assert refusal.body()["error"] == "rate_limiter_unavailable"
    assert dict(decision.headers())[b"retry-after"] == b"1"
    assert gate.stats.failed_closed == 1 and gate.stats.rejected == 0
