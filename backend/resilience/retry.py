"""When to try an upstream call again: exponential backoff with jitter, within a budget.

Retries happen only before the first token reaches the client (the chat service runs
them while it still owns the response status), so a retried stream never repeats text.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.providers.errors import ProviderError, ProviderTimeout


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per target, the backoff curve, the retry-after cap and the time budget."""

    max_attempts: int = 3  # per target, the first attempt included
    base_delay: float = 0.5
    max_delay: float = 4.0
    jitter: float = 1.0  # 0: exact backoff; 1: "full jitter", anywhere in [0, backoff]
    retry_after_cap: float = 5.0
    budget: float = 90.0  # no retry or fallback starts this long after the first attempt

    @classmethod
    def single_attempt(cls) -> RetryPolicy:
        """No retries at all (and, with no fallbacks, one upstream call per request)."""
        return cls(max_attempts=1)

    def delay(
        self, attempt: int, error: ProviderError, *, elapsed: float, rand: float
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1` on the same target; None: stop.

        `rand` is a uniform draw from [0, 1) (injected, so tests are exact).
        """
        if attempt >= self.max_attempts or not should_retry(error):
            return None
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        wait = backoff * (1.0 - self.jitter * rand)
        # Every retryable failure may carry the provider's hint: a 429, and also a 529 or
        # 5xx with `retry-after` (Anthropic sends one when overloaded).
        hint = error.retry_after
        if hint is not None:
            if hint > self.retry_after_cap:
                # The provider says it will not be ready within what we are willing to wait:
                # go to a fallback, or hand the client its Retry-After, right away.
                return None
            wait = max(wait, hint)
        if elapsed + wait > self.budget:
            return None
        return wait

    def may_fall_back(self, elapsed: float) -> bool:
        """True while a fallback target may still be started."""
        return elapsed < self.budget


def should_retry(error: ProviderError) -> bool:
    """Whether the same target is worth another attempt after this failure.

    Rate limits, 5xx (Anthropic's 529 included), refused or reset connections and streams
    cut before their first token are. A timeout is not: a provider that used up the whole
    bound is likely to do so again, so the time goes to a fallback instead. 4xx never are.
    """
    return error.retryable and not isinstance(error, ProviderTimeout)
