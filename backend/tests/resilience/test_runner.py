"""Retries, fallbacks and breakers around stub providers: exact counts, no network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from backend.providers.base import Completion, CompletionRequest, Message, Provider, StreamEvent
from backend.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from backend.providers.factory import ProviderTarget
from backend.resilience.breaker import BreakerRegistry, CircuitOpen
from backend.resilience.retry import RetryPolicy
from backend.resilience.runner import Resilience
from backend.specialists.types import Route

REQUEST = CompletionRequest(
    model="primary-model", messages=(Message("user", "hi"),), temperature=0.3,
    max_output_tokens=100,
)
BACKUP = Route(ProviderTarget("anthropic"), "backup-model", temperature=None, max_output_tokens=7)


class Stub(Provider):
    """Fails with the scripted errors in turn, then answers."""

    def __init__(self, name: str, *errors: ProviderError, forever: bool = False) -> None:
        self.name = name
        self.errors = list(errors)
        self.forever = forever
        self.calls: list[CompletionRequest] = []

    async def complete(self, request: CompletionRequest) -> Completion:
        self.calls.append(request)
        if self.errors:
            error = self.errors[0] if self.forever else self.errors.pop(0)
            raise error
        return Completion(text=f"{self.name} says hi", model=request.model, usage=None)

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        raise NotImplementedError


@dataclass
class Tried:
    provider: str = ""
    model: str = ""


class Clock:
    """Time that passes only when the runner sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def resilience(
    clock: Clock, *, attempts: int = 3, threshold: int = 0, budget: float = 60.0
) -> Resilience:
    return Resilience(
        policy=RetryPolicy(
            max_attempts=attempts, base_delay=0.5, max_delay=4, jitter=0.0, budget=budget,
            retry_after_cap=5,
        ),
        breakers=BreakerRegistry(threshold=threshold, cool_down=30, clock=clock),
        clock=clock, sleep=clock.sleep, rand=lambda: 0.0,
    )


async def complete(provider: Provider, request: CompletionRequest) -> Completion:
    return await provider.complete(request)


async def run(
    r: Resilience, primary: Provider, *fallbacks: tuple[Route, Provider], tried: Tried | None = None
) -> tuple[str, str]:
    table = dict(fallbacks)

    def resolve(route: Route) -> Provider:
        provider = table[route]
        if isinstance(provider, Stub) and provider.name == "unconfigured":
            raise ProviderNotConfigured("no key", provider="x", variable="X_KEY")
        return provider

    answered = await r.run(
        primary, REQUEST, fallbacks=list(table), resolve=resolve, call=complete,
        tried=tried or Tried(),
    )
    return answered.value.text, answered.request.model


def down(status: int = 503) -> ProviderError:
    return ProviderUnavailable(f"HTTP {status}", provider="openai", status=status)


async def test_retryable_failures_recover_within_the_attempt_budget() -> None:
    clock = Clock()
    primary = Stub("openai", down(), ProviderRateLimited("429", provider="openai", retry_after=2))
    assert await run(resilience(clock), primary) == ("openai says hi", "primary-model")
    assert len(primary.calls) == 3
    assert clock.sleeps == [0.5, 2.0]  # backoff, then the provider's longer retry-after


async def test_a_non_retryable_failure_is_raised_at_once_without_fallbacks() -> None:
    clock = Clock()
    primary = Stub("openai", ProviderAuthError("401", provider="openai", status=401))
    backup = Stub("anthropic")
    with pytest.raises(ProviderAuthError):
        await run(resilience(clock), primary, (BACKUP, backup))
    assert len(primary.calls) == 1 and not backup.calls and not clock.sleeps


async def test_exhausted_retries_fall_back_with_the_route_model_and_parameters() -> None:
    clock = Clock()
    primary = Stub("openai", down(), forever=True)
    backup = Stub("anthropic")
    tried = Tried()
    assert await run(resilience(clock), primary, (BACKUP, backup), tried=tried) == (
        "anthropic says hi", "backup-model",
    )
    assert len(primary.calls) == 3 and len(backup.calls) == 1
    (sent,) = backup.calls
    assert (sent.temperature, sent.max_output_tokens, sent.messages) == (None, 7, REQUEST.messages)
    assert (tried.provider, tried.model) == ("anthropic", "backup-model")


async def test_a_timeout_goes_straight_to_the_fallback() -> None:
    clock = Clock()
    primary = Stub("openai", ProviderTimeout("slow", provider="openai"), forever=True)
    backup = Stub("anthropic")
    assert (await run(resilience(clock), primary, (BACKUP, backup)))[0] == "anthropic says hi"
    assert len(primary.calls) == 1


async def test_when_every_target_fails_the_last_failure_is_raised() -> None:
    clock = Clock()
    primary = Stub("openai", down(), forever=True)
    backup = Stub("anthropic", ProviderRateLimited("429", provider="anthropic"), forever=True)
    tried = Tried()
    with pytest.raises(ProviderRateLimited):
        await run(resilience(clock, attempts=2), primary, (BACKUP, backup), tried=tried)
    assert (len(primary.calls), len(backup.calls)) == (2, 2)
    assert tried.provider == "anthropic"


async def test_an_unconfigured_fallback_is_skipped() -> None:
    clock = Clock()
    other = Route(ProviderTarget("google"), "g", None, None)
    primary = Stub("openai", down(), forever=True)
    backup = Stub("anthropic")
    result = await run(
        resilience(clock, attempts=1), primary, (other, Stub("unconfigured")), (BACKUP, backup)
    )
    assert result[0] == "anthropic says hi"


async def test_no_fallback_starts_once_the_budget_is_spent() -> None:
    clock = Clock()
    slow = Stub("openai", ProviderTimeout("slow", provider="openai"), forever=True)
    backup = Stub("anthropic")

    async def late(provider: Provider, request: CompletionRequest) -> Completion:
        clock.now += 11  # the attempt used up its whole bound
        return await provider.complete(request)

    r = resilience(clock, budget=10)
    with pytest.raises(ProviderTimeout):
        await r.run(
            slow, REQUEST, fallbacks=[BACKUP], resolve=lambda _: backup, call=late, tried=Tried()
        )
    assert not backup.calls


async def test_an_open_breaker_fails_fast_and_the_fallback_answers() -> None:
    clock = Clock()
    r = resilience(clock, attempts=2, threshold=2)
    primary = Stub("openai", down(), forever=True)
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            await run(r, primary)
    assert len(primary.calls) == 4
    with pytest.raises(CircuitOpen) as refused:
        await run(r, primary)
    assert len(primary.calls) == 4 and refused.value.retry_after == pytest.approx(30.0)
    backup = Stub("anthropic")
    assert (await run(r, primary, (BACKUP, backup)))[0] == "anthropic says hi"
    # After the cool-down one probe goes through; its success closes the circuit.
    clock.now += 30
    primary.errors.clear()
    assert (await run(r, primary))[0] == "openai says hi"
    assert r.breakers.get((primary, "primary-model"), "openai").state == "closed"


async def test_a_request_cancelled_during_backoff_leaves_the_probe_slot_free() -> None:
    clock = Clock()
    r = Resilience(  # real sleeps: the probe's backoff is what gets cancelled
        policy=RetryPolicy(max_attempts=3, base_delay=10, jitter=0.0, budget=100),
        breakers=BreakerRegistry(threshold=1, cool_down=5, clock=clock), clock=clock,
    )
    primary = Stub("openai", down(), forever=True)
    breaker = r.breakers.get((primary, "primary-model"), "openai")
    breaker.failed(breaker.acquire())
    clock.now += 5
    task = asyncio.create_task(
        r.run(primary, REQUEST, fallbacks=[], resolve=lambda _: primary, call=complete,
              tried=Tried())
    )
    await asyncio.sleep(0.05)  # the probe failed once and is sleeping 10 s before retrying
    assert len(primary.calls) == 1 and breaker.probing
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.acquire() is True  # no verdict: the next request may probe
