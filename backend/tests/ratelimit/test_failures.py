"""The failure throttle: a sliding window per client, bounded memory, reset on success."""

from __future__ import annotations

import pytest

from backend.ratelimit.failures import AuthThrottled, FailureThrottle


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_max_failures_in_the_window_throttle_until_the_oldest_leaves_it() -> None:
    clock = Clock()
    throttle = FailureThrottle(3, 60, clock=clock)
    for expected in (1, 2):
        assert throttle.failed("a") == expected
        clock.now += 10
    assert throttle.retry_after("a") is None
    assert throttle.failed("a") == 3  # the third, at t=20
    assert throttle.retry_after("a") == pytest.approx(40)  # the first leaves at t=60
    with pytest.raises(AuthThrottled) as raised:
        throttle.check("a")
    assert raised.value.retry_after == 40 and raised.value.code == "auth_throttled"
    assert throttle.retry_after("b") is None  # other clients are not affected
    clock.now += 40
    assert throttle.retry_after("a") is None
    # One more failure fills the window again: sustained, at most 3 per 60 s.
    assert throttle.failed("a") == 3
    assert throttle.retry_after("a") == pytest.approx(10)


def test_old_failures_expire_and_success_forgets_them() -> None:
    clock = Clock()
    throttle = FailureThrottle(2, 60, clock=clock)
    throttle.failed("a")
    clock.now += 61
    assert throttle.failed("a") == 1
    throttle.succeeded("a")
    assert throttle.failed("a") == 1


def test_memory_is_bounded_by_the_tracked_clients() -> None:
    throttle = FailureThrottle(5, 60, max_clients=100, clock=Clock())
    for n in range(10_000):
        for _ in range(5):
            throttle.failed(f"client-{n}")
    assert len(throttle) == 100
    assert throttle.retry_after("client-9999") is not None  # the most recent are kept
    assert throttle.retry_after("client-0") is None
