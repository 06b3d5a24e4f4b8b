"""The retry policy: which failures are retried, how long to wait, and when to stop."""

from __future__ import annotations

import pytest

from backend.providers.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderStreamCut,
    ProviderTimeout,
    ProviderUnavailable,
)
from backend.resilience.retry import RetryPolicy

EXACT = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=1.5, jitter=0.0, budget=100)


def unavailable() -> ProviderError:
    return ProviderUnavailable("down", provider="openai", status=503)


def test_backoff_doubles_up_to_its_cap() -> None:
    waits = [EXACT.delay(n, unavailable(), elapsed=0, rand=0.5) for n in (1, 2, 3)]
    assert waits == [0.5, 1.0, 1.5]


def test_attempts_are_bounded() -> None:
    assert EXACT.delay(4, unavailable(), elapsed=0, rand=0.0) is None
    assert RetryPolicy.single_attempt().delay(1, unavailable(), elapsed=0, rand=0.0) is None


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.999])
def test_full_jitter_stays_within_the_backoff(rand: float) -> None:
    policy = RetryPolicy(base_delay=2.0, max_delay=8.0, jitter=1.0)
    wait = policy.delay(2, unavailable(), elapsed=0, rand=rand)
    assert wait == pytest.approx(4.0 * (1 - rand))
    assert wait is not None and 0 < wait <= 4.0


@pytest.mark.parametrize(
    "error",
    [
        ProviderUnavailable("529 overloaded", provider="anthropic", status=529),
        ProviderUnavailable("connection refused", provider="openai"),
        ProviderRateLimited("429", provider="google"),
        ProviderStreamCut("cut before the first token", provider="openai"),
    ],
)
def test_retryable_failures_are_retried(error: ProviderError) -> None:
    assert EXACT.delay(1, error, elapsed=0, rand=0) == 0.5


@pytest.mark.parametrize(
    "error",
    [
        ProviderBadRequest("400", provider="openai", status=400),
        ProviderAuthError("401", provider="anthropic", status=401),
        ProviderTimeout("no first token", provider="google"),
    ],
)
def test_bad_requests_auth_and_timeouts_are_not_retried_on_the_same_target(
    error: ProviderError,
) -> None:
    assert EXACT.delay(1, error, elapsed=0, rand=0) is None


def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    limited = ProviderRateLimited("429", provider="openai", retry_after=3.0)
    policy = RetryPolicy(base_delay=0.5, jitter=0.0, retry_after_cap=5.0)
    assert policy.delay(1, limited, elapsed=0, rand=0) == 3.0
    short = ProviderRateLimited("429", provider="openai", retry_after=0.1)
    assert policy.delay(1, short, elapsed=0, rand=0) == 0.5


def test_retry_after_over_the_cap_stops_retrying_at_once() -> None:
    limited = ProviderRateLimited("429", provider="openai", retry_after=30.0)
    assert RetryPolicy(retry_after_cap=5.0).delay(1, limited, elapsed=0, rand=0) is None


def test_no_retry_that_would_end_past_the_budget() -> None:
    policy = RetryPolicy(base_delay=1.0, jitter=0.0, budget=10.0)
    assert policy.delay(1, unavailable(), elapsed=8.5, rand=0) == 1.0
    assert policy.delay(1, unavailable(), elapsed=9.5, rand=0) is None
    assert policy.may_fall_back(9.9) and not policy.may_fall_back(10.0)
