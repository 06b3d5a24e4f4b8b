"""Token-bucket semantics with an injected clock: refill, headers, Retry-After, both keys."""

from __future__ import annotations

import asyncio

import pytest

from backend.ratelimit.base import Bucket, BucketState, RateDecision, RateLimitExceeded
from backend.ratelimit.memory import MemoryRateLimiter
from backend.ratelimit.policy import Limit, LimitOverride, build_policy

SPECIALIST = "678c859c-52cf-47ee-b013-7b39a5652f1c"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def headers(decision: RateDecision) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in decision.headers()}


def ip_bucket(capacity: int = 60, window: float = 3600, key: str = "ip:1.2.3.4") -> Bucket:
    return Bucket(key, "ip", capacity, window)


async def test_a_fresh_bucket_admits_and_reports_what_is_left() -> None:
    limiter = MemoryRateLimiter(clock=Clock())
    decision = await limiter.acquire([ip_bucket()])
    assert decision.allowed
    # One token of 60 used; it comes back in 3600/60 = 60 s, so the bucket is full in 60 s.
    assert headers(decision) == {
        "x-ratelimit-limit": "60", "x-ratelimit-remaining": "59", "x-ratelimit-reset": "60",
    }


async def test_an_empty_bucket_refuses_with_retry_after_until_one_token() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    bucket = ip_bucket(capacity=2, window=3600)
    for _ in range(2):
        assert (await limiter.acquire([bucket])).allowed
    refused = await limiter.acquire([bucket])
    assert not refused.allowed
    assert refused.remaining == 0
    assert refused.retry_after == pytest.approx(1800)  # one token per 1800 s
    assert headers(refused)["retry-after"] == "1800"
    assert headers(refused)["x-ratelimit-reset"] == "3600"  # two tokens to go
    with pytest.raises(RateLimitExceeded):
        raise refused.refusal() or AssertionError


async def test_refill_is_continuous_and_lazy() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    bucket = ip_bucket(capacity=2, window=20)  # a token every 10 s
    for _ in range(2):
        await limiter.acquire([bucket])
    clock.now += 9.5
    refused = await limiter.acquire([bucket])
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.5)
    assert headers(refused)["retry-after"] == "1"  # rounded up, never 0
    clock.now += 0.5
    admitted = await limiter.acquire([bucket])
    assert admitted.allowed and admitted.remaining == 0
    clock.now += 1000  # long idle: the bucket is full again, never over-full
    assert (await limiter.acquire([bucket])).remaining == 1


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(1e-9, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (59.5, "60"), (1800.0, "1800")],
)
def test_retry_after_is_whole_seconds_rounded_up_and_never_zero(
    retry_after: float, header: str
) -> None:
    decision = RateDecision(False, 60, 0, 10.0, retry_after, "ip")
    assert headers(decision)["retry-after"] == header


def test_reset_rounds_up_and_is_zero_only_when_full() -> None:
    bucket = ip_bucket(capacity=60, window=3600)
    assert BucketState(bucket, 60.0, True).reset_after == 0
    assert BucketState(bucket, 59.99, True).reset_after == pytest.approx(0.6)
    decision = RateDecision.from_states([BucketState(bucket, 59.99, True)])
    assert headers(decision)["x-ratelimit-reset"] == "1"
    assert "retry-after" not in headers(decision)


async def test_both_buckets_apply_and_the_stricter_is_reported() -> None:
    limiter = MemoryRateLimiter(clock=Clock())
    ip = ip_bucket(capacity=10)
    user = Bucket("user:h", "user", 3, 3600)
    first = await limiter.acquire([ip, user])
    assert (first.key_kind, first.limit, first.remaining) == ("user", 3, 2)
    for _ in range(2):
        await limiter.acquire([ip, user])
    refused = await limiter.acquire([ip, user])
    assert not refused.allowed and refused.key_kind == "user"
    # All or nothing: the refused request took nothing from the IP bucket either.
    other_user = await limiter.acquire([ip, Bucket("user:other", "user", 3, 3600)])
    assert other_user.allowed
    ip_only = await limiter.acquire([ip])
    assert ip_only.remaining == 10 - 5


async def test_the_ip_bucket_decides_when_it_is_the_stricter() -> None:
    limiter = MemoryRateLimiter(clock=Clock())
    ip = ip_bucket(capacity=2)
    for name in ("a", "b"):
        assert (await limiter.acquire([ip, Bucket(f"user:{name}", "user", 100, 3600)])).allowed
    refused = await limiter.acquire([ip, Bucket("user:c", "user", 100, 3600)])
    assert not refused.allowed
    assert (refused.key_kind, refused.limit) == ("ip", 2)
    assert refused.retry_after == pytest.approx(1800)


async def test_retry_after_is_the_longest_wait_over_the_empty_buckets() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    fast = Bucket("user:fast", "user", 1, 10)  # a token per 10 s
    slow = ip_bucket(capacity=1, window=100)  # a token per 100 s
    await limiter.acquire([fast, slow])
    refused = await limiter.acquire([fast, slow])
    assert refused.retry_after == pytest.approx(100)
    assert refused.key_kind == "ip"


async def test_full_buckets_are_forgotten_so_memory_stays_bounded() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock, sweep_every=10)
    for i in range(10):
        await limiter.acquire([ip_bucket(capacity=5, window=50, key=f"ip:10.0.0.{i}")])
    # The tenth take triggered a sweep, but every bucket was still refilling.
    assert len(limiter) == 10
    clock.now += 10.0  # one token back: each of those buckets is full again
    for i in range(10):
        await limiter.acquire([ip_bucket(capacity=5, window=50, key=f"ip:10.1.0.{i}")])
    assert len(limiter) == 10  # the first ten were dropped, the new ten are held


async def test_concurrent_takes_in_one_loop_admit_exactly_the_capacity() -> None:
    limiter = MemoryRateLimiter()
    bucket = ip_bucket(capacity=60)
    decisions = await asyncio.gather(*(limiter.acquire([bucket]) for _ in range(1000)))
    admitted = [d for d in decisions if d.allowed]
    assert len(admitted) == 60
    assert sorted(d.remaining for d in admitted) == list(range(60))


def test_policy_buckets_per_ip_user_named_user_and_specialist() -> None:
    policy = build_policy(
        ip=Limit(60, 3600),
        user=Limit(100, 7200),
        user_overrides={"vip": LimitOverride(requests=1000)},
        specialist_overrides={SPECIALIST: LimitOverride(requests=5, window_seconds=60)},
    )
    assert [(b.key, b.capacity, b.window_seconds) for b in policy.buckets(ip="1.2.3.4")] == [
        ("ip:1.2.3.4", 60, 3600)
    ]
    plain = policy.buckets(ip="1.2.3.4", user="someone")
    assert [(b.kind, b.capacity, b.window_seconds) for b in plain] == [
        ("ip", 60, 3600), ("user", 100, 7200)
    ]
    vip = policy.buckets(ip="1.2.3.4", user="vip")
    assert vip[1].capacity == 1000 and vip[1].window_seconds == 7200  # window inherited
    # The specialist is named in any spelling; its buckets are its own, per client.
    scoped = policy.buckets(ip="1.2.3.4", user="vip", specialist=SPECIALIST.upper())
    assert [b.key for b in scoped] == [
        "ip:1.2.3.4", "user:vip",
        f"s:{SPECIALIST}:ip:1.2.3.4", f"s:{SPECIALIST}:user:vip",
    ]
    assert {(b.capacity, b.window_seconds, b.specialist) for b in scoped[2:]} == {
        (5, 60, SPECIALIST)
    }
    # Unknown or malformed specialist ids add nothing (and cannot grow the key space).
    assert len(policy.buckets(ip="1.2.3.4", specialist="not-a-uuid")) == 1
    assert len(policy.buckets(ip="1.2.3.4", specialist=str(SPECIALIST[:-1] + "0"))) == 1


async def test_a_specialist_limit_is_stricter_and_leaves_other_specialists_alone() -> None:
    policy = build_policy(
        ip=Limit(60, 3600), user=Limit(60, 3600), user_overrides={},
        specialist_overrides={SPECIALIST: LimitOverride(requests=2)},
    )
    limiter = MemoryRateLimiter(clock=Clock())
    for _ in range(2):
        assert (await limiter.acquire(policy.buckets(ip="a", specialist=SPECIALIST))).allowed
    refused = await limiter.acquire(policy.buckets(ip="a", specialist=SPECIALIST))
    assert not refused.allowed and refused.specialist == SPECIALIST
    assert "on this specialist" in (refused.refusal() or Exception()).args[0]
    other = await limiter.acquire(policy.buckets(ip="a", specialist=None))
    assert other.allowed and other.remaining == 60 - 3  # the general bucket paid for all three
