"""A circuit breaker per upstream target: fail fast while a provider keeps failing.

Closed: calls pass; each request that ends in a retryable upstream failure (after its
retries) counts one, any answer from the provider resets the count. At the threshold
the circuit opens: calls fail at once with `CircuitOpen` (503 with Retry-After) for the
cool-down. Then it is half-open: one request is let through as a probe; its success
closes the circuit, its failure opens it for another cool-down, and other requests keep
failing fast meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from backend.providers.errors import ProviderUnavailable

Clock = Callable[[], float]
# Told (provider, any circuit of it open) when a circuit opens or closes: the metrics' gauge.
OnChange = Callable[[str, bool], None]


class CircuitOpen(ProviderUnavailable):
    """The provider failed repeatedly; calls fail fast until `retry_after` seconds pass."""

    code = "upstream_circuit_open"

    def __init__(self, message: str, *, provider: str, retry_after: float) -> None:
        # No call was made: nothing to bill.
        super().__init__(message, provider=provider, retry_after=retry_after, billed=False)
        self.retry_after: float = retry_after


class CircuitBreaker:
    """The state of one target; cheap enough to consult on every request."""

    __slots__ = (
        "_changed", "_clock", "_cool_down", "_threshold", "failures", "label", "opened_at",
        "probing",
    )

    def __init__(
        self, label: str, *, threshold: int, cool_down: float, clock: Clock,
        changed: Callable[[str], None] | None = None,
    ) -> None:
        self.label = label  # the provider name, as errors name it
        self._changed = changed
        self._threshold = threshold
        self._cool_down = cool_down
        self._clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def state(self) -> str:
        """"closed", "open" or "half_open" (for logs, health and tests)."""
        if self.opened_at is None:
            return "closed"
        if self.probing or self._clock() - self.opened_at >= self._cool_down:
            return "half_open"
        return "open"

    def acquire(self) -> bool:
        """Let a call through or raise `CircuitOpen`; True when the call is the probe."""
        if self.opened_at is None:
            return False
        remaining = self.opened_at + self._cool_down - self._clock()
        if remaining > 0 or self.probing:
            raise CircuitOpen(
                f"{self.label} failed repeatedly; not calling it for now",
                provider=self.label,
                retry_after=max(remaining, 1.0),
            )
        self.probing = True
        return True

    def succeeded(self, probe: bool) -> None:
        """The provider answered (a 4xx counts: it is up, our request was at fault)."""
        self.failures = 0
        was_open, self.opened_at = self.opened_at is not None, None
        if probe:
            self.probing = False
        if was_open and self._changed is not None:
            self._changed(self.label)

    def failed(self, probe: bool) -> None:
        """A request ended in a retryable upstream failure."""
        self.failures += 1
        opens = probe or (self._threshold > 0 and self.failures >= self._threshold)
        was_open = self.opened_at is not None
        if opens:
            self.opened_at = self._clock()
        if probe:
            self.probing = False
        if opens and not was_open and self._changed is not None:
            self._changed(self.label)

    def abandoned(self, probe: bool) -> None:
        """The call ended with no verdict (client gone): let the next request probe."""
        if probe:
            self.probing = False


class BreakerRegistry:
    """One breaker per key, made on first use; `threshold` 0 turns breakers off."""

    def __init__(
        self, *, threshold: int, cool_down: float, clock: Clock = time.monotonic,
        on_change: OnChange | None = None,
    ) -> None:
        self._on_change = on_change
        self._threshold = threshold
        self._cool_down = cool_down
        self._clock = clock
        self._breakers: dict[Hashable, CircuitBreaker] = {}

    @property
    def enabled(self) -> bool:
        """False when breakers are turned off."""
        return self._threshold > 0

    def get(self, key: Hashable, label: str) -> CircuitBreaker:
        """The breaker for `key` (a target); `label` names its provider in errors."""
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = CircuitBreaker(
                label, threshold=self._threshold, cool_down=self._cool_down, clock=self._clock,
                changed=self._changed if self._on_change is not None else None,
            )
            self._breakers[key] = breaker
        return breaker

    def _changed(self, label: str) -> None:
        # Rare (a circuit opening or closing), so a scan of this provider's breakers is fine.
        if self._on_change is not None:
            is_open = any(
                b.opened_at is not None for b in self._breakers.values() if b.label == label
            )
            self._on_change(label, is_open)
