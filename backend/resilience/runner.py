"""Retries, fallbacks and circuit breakers around one chat request's upstream call.

Everything here happens before the first token reaches the client: the chat service
awaits the first upstream event before the response starts, so a retried or rerouted
attempt never repeats or mixes text. Per request, not per chunk: the stream's hot path
sees none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

from backend.config.settings import Settings
from backend.observability.labels import attempt_result
from backend.observability.metrics import NULL_METRICS, PortalMetrics
from backend.observability.tracing import Tracing
from backend.providers.base import CompletionRequest, Provider
from backend.providers.errors import ProviderError, ProviderNotConfigured
from backend.providers.factory import PROVIDER_NAMES, check_provider_name
from backend.resilience.breaker import BreakerRegistry, CircuitBreaker
from backend.resilience.retry import RetryPolicy
from backend.resilience.timeouts import provider_timeouts
from backend.specialists.types import Route

log = logging.getLogger(__name__)

T = TypeVar("T")
Call = Callable[[Provider, CompletionRequest], Awaitable[T]]


class Attempted(Protocol):
    """Where the service notes which provider and model are being tried (the outcome)."""

    provider: str
    model: str


# Not frozen, though never changed: built per request (see providers/base.py Usage).
@dataclass(slots=True)
class Answered(Generic[T]):
    """A call that succeeded: its value, and the provider and request that produced it."""

    value: T
    provider: Provider
    request: CompletionRequest
    breaker: CircuitBreaker | None


class Resilience:
    """The retry policy, the breakers and the first-token bounds, shared by all requests."""

    def __init__(
        self,
        *,
        policy: RetryPolicy,
        breakers: BreakerRegistry,
        first_token: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        metrics: PortalMetrics = NULL_METRICS,
        tracing: Tracing | None = None,
    ) -> None:
        self.policy = policy
        self.breakers = breakers
        self._first_token = dict(first_token or {})
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._metrics = metrics
        self._tracing = tracing

    @classmethod
    def from_settings(
        cls, settings: Settings, *, metrics: PortalMetrics = NULL_METRICS,
        tracing: Tracing | None = None,
    ) -> Resilience:
        """Build from settings; an unknown provider in PROVIDER_TIMEOUTS stops start-up."""
        for name in settings.provider_timeouts:
            check_provider_name(name)
        policy = RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            base_delay=settings.retry_base_delay_seconds,
            max_delay=settings.retry_max_delay_seconds,
            jitter=settings.retry_jitter,
            retry_after_cap=settings.retry_after_cap_seconds,
            budget=settings.retry_budget_seconds,
        )
        breakers = BreakerRegistry(
            threshold=settings.breaker_failure_threshold,
            cool_down=settings.breaker_cool_down_seconds,
            on_change=metrics.circuit,
        )
        first_token = {
            name: bound
            for name in PROVIDER_NAMES
            if (bound := provider_timeouts(settings, name).first_token) is not None
        }
        return cls(
            policy=policy, breakers=breakers, first_token=first_token, metrics=metrics,
            tracing=tracing,
        )

    @classmethod
    def off(cls) -> Resilience:
        """One attempt, no breakers, no first-token bound: the behaviour before this package."""
        return cls(
            policy=RetryPolicy.single_attempt(),
            breakers=BreakerRegistry(threshold=0, cool_down=1.0),
        )

    def first_token(self, provider: str) -> float | None:
        """Seconds a stream from this provider may take to its first text."""
        return self._first_token.get(provider)

    async def run(
        self,
        primary: Provider,
        request: CompletionRequest,
        *,
        fallbacks: Sequence[Route],
        resolve: Callable[[Route], Provider],
        call: Call[T],
        tried: Attempted,
    ) -> Answered[T]:
        """Call the primary with retries, then each fallback; raise the last failure.

        A failure that is not retryable (bad request, auth) is raised at once: another
        provider would most likely refuse the same request, and the error is ours to fix.
        """
        started = self._clock()
        last: ProviderError | None = None
        for route in (None, *fallbacks):
            provider = primary
            if route is not None:
                if not self.policy.may_fall_back(self._clock() - started):
                    break
                try:
                    provider = resolve(route)
                except ProviderNotConfigured as exc:
                    log.warning("skipping fallback %s: %s", route.target.provider, exc.message)
                    continue
                request = replace(
                    request, model=route.model, temperature=route.temperature,
                    max_output_tokens=route.max_output_tokens,
                )
                self._metrics.fallback(tried.provider, provider.name)
            tried.provider, tried.model = provider.name, request.model
            try:
                return await self._on_target(provider, request, call, started)
            except ProviderError as exc:
                if not exc.retryable:
                    raise
                last = exc
                log.warning("%s %s failed: %s", provider.name, request.model, exc.code)
        assert last is not None  # the primary always runs
        raise last

    def _span(self, provider: str, model: str) -> contextlib.AbstractContextManager[None]:
        # A child span per attempt when tracing is on; a shared no-op otherwise.
        return _NO_SPAN if self._tracing is None else self._tracing.attempt(provider, model)

    async def _on_target(
        self, provider: Provider, request: CompletionRequest, call: Call[T], started: float
    ) -> Answered[T]:
        """Attempts on one target, with backoff between them, under its breaker."""
        breaker = None
        if self.breakers.enabled:
            breaker = self.breakers.get((provider, request.model), provider.name)
        probe = breaker.acquire() if breaker is not None else False
        failed: bool | None = None  # None: no verdict (cancelled, or a bug)
        try:
            attempt = 1
            while True:
                try:
                    with self._span(provider.name, request.model):
                        value = await call(provider, request)
                except BaseException as exc:
                    self._metrics.attempt(provider.name, request.model, attempt_result(exc))
                    if not isinstance(exc, ProviderError):
                        raise
                    elapsed = self._clock() - started
                    wait = self.policy.delay(attempt, exc, elapsed=elapsed, rand=self._rand())
                    if wait is None:
                        failed = exc.retryable
                        raise
                    log.info(
                        "retrying %s %s after %s (attempt %d of %d) in %.2f s", provider.name,
                        request.model, exc.code, attempt + 1, self.policy.max_attempts, wait,
                    )
                    await self._sleep(wait)
                    attempt += 1
                    continue
                self._metrics.attempt(provider.name, request.model, "ok")
                failed = False
                return Answered(value, provider, request, breaker)
        finally:
            if breaker is not None:
                _settle(breaker, probe, failed)


_NO_SPAN = contextlib.nullcontext()


def _settle(breaker: CircuitBreaker, probe: bool, failed: bool | None) -> None:
    if failed is None:
        breaker.abandoned(probe)
    elif failed:
        breaker.failed(probe)
    else:
        breaker.succeeded(probe)
