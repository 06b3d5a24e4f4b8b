"""The circuit breaker's states, driven by an injected clock."""

from __future__ import annotations

import pytest

from backend.resilience.breaker import BreakerRegistry, CircuitBreaker, CircuitOpen


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(clock: Clock, threshold: int = 3, cool_down: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker("openai", threshold=threshold, cool_down=cool_down, clock=clock)


def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        b.failed(b.acquire())


def test_opens_after_the_threshold_of_consecutive_failures(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 2)
    assert b.state == "closed" and b.acquire() is False
    b.failed(False)
    assert b.state == "open"
    clock.now += 10
    with pytest.raises(CircuitOpen) as refused:
        b.acquire()
    assert refused.value.retry_after == pytest.approx(20.0)
    assert refused.value.provider == "openai"
    assert refused.value.code == "upstream_circuit_open"


def test_a_success_resets_the_count(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 2)
    b.succeeded(b.acquire())
    fail(b, 2)
    assert b.state == "closed"


def test_after_the_cool_down_one_probe_passes_and_its_success_closes(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 3)
    clock.now += 30
    assert b.state == "half_open"
    assert b.acquire() is True  # the probe
    with pytest.raises(CircuitOpen):  # everyone else still fails fast meanwhile
        b.acquire()
    b.succeeded(True)
    assert b.state == "closed"
    assert b.acquire() is False and b.acquire() is False


def test_a_failed_probe_opens_it_for_another_cool_down(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 3)
    clock.now += 31
    b.failed(b.acquire())
    assert b.state == "open"
    clock.now += 29
    with pytest.raises(CircuitOpen):
        b.acquire()
    clock.now += 1
    assert b.acquire() is True


def test_an_abandoned_probe_lets_the_next_request_probe(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 3)
    clock.now += 30
    b.abandoned(b.acquire())
    assert b.acquire() is True


def test_registry_keeps_one_breaker_per_key_and_zero_turns_them_off(clock: Clock) -> None:
    registry = BreakerRegistry(threshold=1, cool_down=5, clock=clock)
    first = registry.get(("openai", "gpt-4o"), "openai")
    assert registry.get(("openai", "gpt-4o"), "openai") is first
    assert registry.get(("openai", "gpt-4o-mini"), "openai") is not first
    first.failed(first.acquire())
    with pytest.raises(CircuitOpen):
        first.acquire()
    off = BreakerRegistry(threshold=0, cool_down=5, clock=clock)
    assert not off.enabled
    never = off.get("x", "openai")
    fail(never, 50)
    assert never.state == "closed"
