"""The pieces under the metrics: outcome mapping, label sets, the multiprocess directory."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backend.auth.errors import (
    AuthUnavailable,
    Forbidden,
    TokenExpired,
    TokenInvalid,
    TokenMissing,
    UntrustedFrontend,
)
from backend.budgets.base import Charge, ScopeState
from backend.budgets.errors import BudgetExceeded, BudgetUnavailable, BudgetUnpriced
from backend.config.settings import Settings
from backend.errors import RequestTooLarge
from backend.governance.errors import GovernanceUnavailable
from backend.guard.errors import GuardFailed, PiiDetected
from backend.observability.labels import OTHER, LabelSets, attempt_result
from backend.observability.metrics import (
    DURATION_BUCKETS,
    TTFT_BUCKETS,
    MetricsSetupError,
    build_metrics,
)
from backend.observability.multiprocess import prepare_directory, server_identity
from backend.observability.outcomes import OUTCOMES, outcome_of
from backend.providers.errors import (
    ProviderAuthError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from backend.ratelimit.base import RateDecision, RateLimitExceeded
from backend.resilience.breaker import CircuitOpen
from backend.resilience.disconnect import ClientDisconnected
from backend.specialists.manager import SpecialistNotFound

SPENT = BudgetExceeded(
    ScopeState(Charge("user", "u1", 10), limit=10, spent=10, reserved=0),
    requested=1, resets_at=datetime(2027, 1, 1, tzinfo=UTC),
)


DECISION = RateDecision(
    allowed=False, limit=1, remaining=0, reset_after=1, retry_after=1, key_kind="ip"
)


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (None, "ok"),
        (RequestTooLarge("big"), "client_error"),
        (SpecialistNotFound("x"), "client_error"),
        (RateLimitExceeded(DECISION), "rate_limited"),
        (SPENT, "budget_exceeded"),
        (BudgetUnpriced("openai", "gpt-x"), "budget_exceeded"),
        (Forbidden("no"), "forbidden"),
        (TokenMissing("no token"), "forbidden"),
        (TokenInvalid("bad"), "forbidden"),
        (TokenExpired("old"), "forbidden"),
        (UntrustedFrontend("who?"), "forbidden"),
        # The portal's own stores failing is ours: not the caller's budget, not a client error.
        (BudgetUnavailable("redis down"), "internal_error"),
        (GuardFailed("guard broke"), "internal_error"),
        (AuthUnavailable("idp down"), "internal_error"),
        (GovernanceUnavailable("db down"), "internal_error"),
        (PiiDetected(["iban"]), "client_error"),
        (ProviderUnavailable("down", provider="openai"), "upstream_error"),
        (ProviderRateLimited("slow", provider="openai"), "upstream_error"),
        (ProviderAuthError("key", provider="openai"), "upstream_error"),
        (CircuitOpen("open", provider="openai", retry_after=1), "upstream_error"),
        (ProviderNotConfigured("no key", provider="openai", variable="X"), "upstream_error"),
        (ProviderTimeout("slow", provider="openai"), "timeout"),
        (ClientDisconnected("gone"), "client_disconnected"),
        (asyncio.CancelledError(), "client_disconnected"),
        (RuntimeError("bug"), "internal_error"),
    ],
)
def test_every_ending_maps_to_one_fixed_outcome(exc: BaseException | None, outcome: str) -> None:
    assert outcome_of(exc) == outcome
    assert outcome in OUTCOMES


def test_attempt_results_come_from_a_fixed_set() -> None:
    assert attempt_result(None) == "ok"
    assert attempt_result(ProviderTimeout("t", provider="google")) == "timeout"
    assert attempt_result(ProviderUnavailable("u", provider="google")) == "unavailable"
    assert attempt_result(CircuitOpen("c", provider="g", retry_after=1)) == "error"
    assert attempt_result(asyncio.CancelledError()) == "cancelled"


def test_labels_outside_the_configuration_become_other() -> None:
    labels = LabelSets(specialists=["s1"], providers=["openai"], models=["gpt-4o"])
    assert labels.model("gpt-4o") == "gpt-4o"
    assert labels.model("gpt-4o-2024-08-06") == OTHER
    assert labels.specialist("someone@example.com") == OTHER
    assert labels.specialist(None) == "none"
    assert labels.provider("evil") == OTHER


def test_a_new_server_wipes_the_directory_and_its_second_worker_keeps_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "counter_111.db").write_bytes(b"old")
    assert prepare_directory(tmp_path, identity="server-a") is True
    assert not (tmp_path / "counter_111.db").exists()
    (tmp_path / "counter_222.db").write_bytes(b"worker one")
    # A dead worker's live gauges go; its counters stay part of the totals.
    (tmp_path / "gauge_livesum_999999999.db").write_bytes(b"dead")
    assert prepare_directory(tmp_path, identity="server-a") is False
    assert (tmp_path / "counter_222.db").exists()
    assert not (tmp_path / "gauge_livesum_999999999.db").exists()
    assert prepare_directory(tmp_path, identity="server-b") is True
    assert list(tmp_path.glob("*.db")) == []


def test_a_single_process_server_is_its_own_identity() -> None:
    assert server_identity() == server_identity()
    assert server_identity().split(":")[0].isdigit()


def test_a_multiprocess_directory_the_library_cannot_see_stops_start_up(tmp_path: Path) -> None:
    # Only in .env: prometheus-client was imported without it and would count per process.
    with pytest.raises(MetricsSetupError, match="PROMETHEUS_MULTIPROC_DIR"):
        build_metrics(
            enabled=True, multiproc_dir=tmp_path, specialists=[], fallbacks=lambda s: (),
            providers=["openai"],
        )
    off = build_metrics(
        enabled=False, multiproc_dir=tmp_path, specialists=[], fallbacks=lambda s: (),
        providers=["openai"],
    )
    assert not off.enabled and off.render()[0] == b""


def test_the_buckets_span_what_a_request_can_take() -> None:
    # The GenAI advice starts at 10 ms; the last finite bucket must reach the bounds the
    # portal itself enforces by default, or the slow tail all lands in +Inf.
    defaults = Settings.model_construct()
    assert DURATION_BUCKETS[0] == TTFT_BUCKETS[0] == 0.01
    assert DURATION_BUCKETS[-1] >= 3 * defaults.retry_budget_seconds
    assert TTFT_BUCKETS[-1] >= defaults.first_token_timeout_seconds
    for buckets in (DURATION_BUCKETS, TTFT_BUCKETS):
        assert list(buckets) == sorted(set(buckets))
