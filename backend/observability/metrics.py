"""Prometheus metrics: the portal's instruments, their label sets, and the /metrics body.

Names and labels are a contract (README, "Operating the portal"); dashboards and alert
rules are built on them. Every label takes its value from configuration (specialist ids,
provider names, configured models) or from a fixed set, so cardinality is bounded: an
unknown value becomes `other` (or `none` where nothing was resolved yet).

Under `uvicorn --workers N`, prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR
in the environment) keeps each worker's values in files that a scrape sums; the directory is
prepared by `observability.multiprocess` when the server starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

from backend.guard.kinds import ALL_TYPES as PII_KINDS
from backend.observability.labels import LabelChildren, LabelSets, label_sets
from backend.observability.multiprocess import prepare_directory

log = logging.getLogger(__name__)

PII_ACTIONS = ("masked", "blocked")

# gen_ai.client.operation.duration's advice (0.01 s doubling to 81.92 s), continued to
# 327.68 s because a portal request may retry and fall back for minutes.
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    163.84, 327.68,
)
# gen_ai.server.time_to_first_token's advice from 10 ms (nothing upstream answers sooner
# through the portal), continued past its 10 s to the first-token bounds (60 s by default).
TTFT_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
    80.0,
)
# One database round trip for a batch: milliseconds normally, the write timeout at worst.
BATCH_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
TRANSPORTS: Final = ("send", "stream", "ws", "v1")
RATE_LIMIT_SCOPES: Final = ("ip", "user", "specialist")
USAGE_RESULTS: Final = ("written", "spooled", "rejected")

_CHAT = ("specialist", "provider", "model")
def multiprocess_mode() -> bool:
    """Whether prometheus-client writes values to PROMETHEUS_MULTIPROC_DIR (set at import)."""
    return bool(getattr(prometheus_values.ValueClass, "_multiprocess", False))


class PortalMetrics:
    """Every instrument of the portal; components call its methods at their few hook points."""

    enabled = True

    def __init__(self, labels: LabelSets, *, registry: CollectorRegistry | None = None) -> None:
        self.labels = labels
        self.registry = registry or CollectorRegistry()
        self._refreshers: list[Callable[[], None]] = []
        reg = self.registry
        chat_labels = ("transport", *_CHAT)
        self.requests = Counter(
            "portal_requests", "Chat requests by how they ended.",
            (*chat_labels, "outcome"), registry=reg,
        )
        self.duration = Histogram(
            "portal_request_duration_seconds",
            "Chat request latency, receipt to last byte (gen_ai.client.operation.duration).",
            chat_labels, buckets=DURATION_BUCKETS, registry=reg,
        )
        self.ttft = Histogram(
            "portal_time_to_first_token_seconds",
            "Streams: receipt to the first text (gen_ai.server.time_to_first_token).",
            chat_labels, buckets=TTFT_BUCKETS, registry=reg,
        )
        self.tokens = Counter(
            "portal_tokens", "Tokens by type (sum of gen_ai.client.token.usage).",
            (*_CHAT, "type"), registry=reg,
        )
        self.cost = Counter(
            "portal_cost_usd", "Estimated cost in US dollars.", _CHAT, registry=reg
        )
        self.attempts = Counter(
            "portal_upstream_attempts", "Upstream calls, each retry and fallback included.",
            ("provider", "model", "result"), registry=reg,
        )
        self.fallbacks = Counter(
            "portal_fallbacks", "Moves from one provider to a fallback.",
            ("from_provider", "to_provider"), registry=reg,
        )
        self.circuit_open = Gauge(
            "portal_circuit_open", "1 while a circuit of this provider is open or half-open "
            "(max over workers).", ("provider",), registry=reg, multiprocess_mode="livemax",
        )
        self.rate_limited_total = Counter(
            "portal_rate_limited", "Requests refused by the rate limiter, by the bucket's scope.",
            ("scope",), registry=reg,
        )
        self.streams_in_flight = Gauge(
            "portal_streams_in_flight", "Streams being answered now (sum over workers).",
            registry=reg, multiprocess_mode="livesum",
        )
        self.usage_queue_depth = Gauge(
            "portal_usage_queue_depth", "Usage records waiting in memory (sum over workers).",
            registry=reg, multiprocess_mode="livesum",
        )
        self.usage_spool_records = Gauge(
            "portal_usage_spool_records", "Usage records in the spool (sum over workers).",
            registry=reg, multiprocess_mode="livesum",
        )
        self.usage_records = Counter(
            "portal_usage_records", "Usage records by where they went.", ("result",),
            registry=reg,
        )
        # The PII guard: values masked or blocked per kind (counts only, never a value).
        self.pii_values = Counter(
            "portal_pii_values", "Values the PII guard masked or blocked, by kind.",
            ("type", "action"), registry=reg,
        )
        self.usage_batch = Histogram(
            "portal_usage_batch_seconds", "Time to write one batch of usage records.",
            buckets=BATCH_BUCKETS, registry=reg,
        )
        self._prepare_children()

    def relabel(self, labels: LabelSets) -> None:
        """Serve a new set of specialists and models (a governed change went live).

        Series already counted keep their labels; only new events are normalised against
        the new set, so a specialist created at runtime is counted under its own id.
        """
        self.labels = labels
        self._prepare_chat_children()

    def _prepare_children(self) -> None:
        self._prepare_chat_children()
        self._prepare_fixed_children()

    def _prepare_chat_children(self) -> None:
        chat = self._chat_labels
        self._requests = LabelChildren(self.requests, lambda t, s, p, m, o: (*chat(t, s, p, m), o))
        self._duration = LabelChildren(self.duration, chat)
        self._ttft = LabelChildren(self.ttft, chat)
        self._cost = LabelChildren(self.cost, lambda s, p, m: chat("", s, p, m)[1:])
        self._tokens = LabelChildren(
            self.tokens, lambda s, p, m, kind: (*chat("", s, p, m)[1:], kind)
        )
        labels = self.labels
        self._attempts = LabelChildren(
            self.attempts, lambda p, m, r: (labels.provider(p), labels.model(m), r)
        )
        self._fallbacks = LabelChildren(
            self.fallbacks, lambda a, b: (labels.provider(a), labels.provider(b))
        )

    def _prepare_fixed_children(self) -> None:
        labels = self.labels
        # Fixed sets are created up front, so each series exists (at 0) before its first
        # event: `rate()` and alert rules then see a change from 0, not a new series.
        for scope in RATE_LIMIT_SCOPES:
            self.rate_limited_total.labels(scope)
        for result in USAGE_RESULTS:
            self.usage_records.labels(result)
        self._scope = {scope: self.rate_limited_total.labels(scope) for scope in RATE_LIMIT_SCOPES}
        self._usage = {result: self.usage_records.labels(result) for result in USAGE_RESULTS}
        self._pii: dict[tuple[str, str], Any] = {
            (kind, action): self.pii_values.labels(kind, action)
            for kind in PII_KINDS for action in PII_ACTIONS
        }
        self._circuit = {p: self.circuit_open.labels(p) for p in sorted(labels.providers)}
        for child in self._circuit.values():
            child.set(0)

    def _chat_labels(
        self, transport: str, specialist: str | None, provider: str | None, model: str | None
    ) -> tuple[str, str, str, str]:
        labels = self.labels
        return (
            transport, labels.specialist(specialist), labels.provider(provider),
            labels.model(model),
        )

    @classmethod
    def off(cls) -> PortalMetrics:
        """Instruments that record nothing (METRICS_ENABLED=false, and unit tests)."""
        return NullMetrics()

    # --- chat requests -------------------------------------------------------------
    def chat_finished(
        self, transport: str, specialist: str, provider: str, model: str, *, outcome: str,
        seconds: float, input_tokens: int, output_tokens: int, cached_input_tokens: int,
        cost_usd: float | None,
    ) -> None:
        """One interaction that reached the chat service ended (called once, with its record)."""
        self._requests.get(transport, specialist, provider, model, outcome).inc()
        self._duration.get(transport, specialist, provider, model).observe(seconds)
        if input_tokens:
            self._tokens.get(specialist, provider, model, "input").inc(input_tokens)
        if output_tokens:
            self._tokens.get(specialist, provider, model, "output").inc(output_tokens)
        if cached_input_tokens:
            self._tokens.get(specialist, provider, model, "cached_input").inc(cached_input_tokens)
        if cost_usd:
            self._cost.get(specialist, provider, model).inc(cost_usd)

    def chat_refused(self, transport: str, specialist: str | None, outcome: str) -> None:
        """A chat request refused before the chat service ran it (limits, validation)."""
        self._requests.get(transport, specialist, None, None, outcome).inc()

    def first_token(
        self, transport: str, specialist: str, provider: str, model: str, seconds: float
    ) -> None:
        """A stream's first text is on its way to the client."""
        self._ttft.get(transport, specialist, provider, model).observe(seconds)

    def stream_opened(self) -> None:
        """A stream started answering."""
        self.streams_in_flight.inc()

    def stream_closed(self) -> None:
        """A stream ended, however it ended."""
        self.streams_in_flight.dec()

    # --- upstream --------------------------------------------------------------------
    def attempt(self, provider: str, model: str, result: str) -> None:
        """One upstream call ended with `result` (one of ATTEMPT_RESULTS)."""
        self._attempts.get(provider, model, result).inc()

    def fallback(self, from_provider: str, to_provider: str) -> None:
        """A request moved on to a fallback route."""
        self._fallbacks.get(from_provider, to_provider).inc()

    def circuit(self, provider: str, is_open: bool) -> None:
        """A provider's circuits changed: 1 while any of them is open."""
        child = self._circuit.get(provider)
        if child is not None:
            child.set(1 if is_open else 0)

    def rate_limited(self, scope: str) -> None:
        """The rate limiter refused a request; `scope` names the deciding bucket."""
        child = self._scope.get(scope)
        if child is not None:
            child.inc()

    def pii(self, action: str | None, counts: Mapping[Any, int]) -> None:
        """What the PII guard did to one request: distinct values per kind."""
        for kind, count in counts.items():
            child = self._pii.get((kind, action or ""))
            if child is not None and count:
                child.inc(count)

    # --- usage writer ----------------------------------------------------------------
    def usage_result(self, result: str, count: int) -> None:
        """`count` usage records were written, spooled or rejected."""
        if count:
            self._usage[result].inc(count)

    def usage_batch_took(self, seconds: float) -> None:
        """One batch insert took this long."""
        self.usage_batch.observe(seconds)

    def usage_levels(self, queue_depth: int, spool_records: int) -> None:
        """The writer's current queue depth and spool size (this worker's)."""
        self.usage_queue_depth.set(queue_depth)
        self.usage_spool_records.set(spool_records)

    # --- exposition ------------------------------------------------------------------
    def on_scrape(self, refresh: Callable[[], None]) -> None:
        """Call `refresh` before each scrape (to bring gauges up to date)."""
        self._refreshers.append(refresh)

    def render(self) -> tuple[bytes, str]:
        """The /metrics body and content type: this process's view, or all workers'."""
        for refresh in self._refreshers:
            refresh()
        registry: CollectorRegistry = self.registry
        if multiprocess_mode():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4


class NullMetrics(PortalMetrics):
    """The same interface, recording nothing: what the request path calls when metrics are off."""

    enabled = False

    def __init__(self) -> None:
        self.labels = LabelSets(specialists=(), providers=(), models=())

    def relabel(self, labels: LabelSets) -> None:
        """Nothing."""

    def chat_finished(self, *args: Any, **kwargs: Any) -> None:
        """Nothing."""

    def chat_refused(self, transport: str, specialist: str | None, outcome: str) -> None:
        """Nothing."""

    def first_token(self, *args: Any) -> None:
        """Nothing."""

    def stream_opened(self) -> None:
        """Nothing."""

    def stream_closed(self) -> None:
        """Nothing."""

    def attempt(self, provider: str, model: str, result: str) -> None:
        """Nothing."""

    def fallback(self, from_provider: str, to_provider: str) -> None:
        """Nothing."""

    def circuit(self, provider: str, is_open: bool) -> None:
        """Nothing."""

    def rate_limited(self, scope: str) -> None:
        """Nothing."""

    def pii(self, action: str | None, counts: Mapping[Any, int]) -> None:
        """Nothing."""

    def usage_result(self, result: str, count: int) -> None:
        """Nothing."""

    def usage_batch_took(self, seconds: float) -> None:
        """Nothing."""

    def usage_levels(self, queue_depth: int, spool_records: int) -> None:
        """Nothing."""

    def on_scrape(self, refresh: Callable[[], None]) -> None:
        """Nothing."""

    def render(self) -> tuple[bytes, str]:
        """Nothing to expose."""
        return b"", CONTENT_TYPE_PLAIN_0_0_4


NULL_METRICS: Final[PortalMetrics] = NullMetrics()


class MetricsSetupError(RuntimeError):
    """Metrics cannot run as configured (the message says what to change)."""


def build_metrics(
    *, enabled: bool, multiproc_dir: Path | None, specialists: Iterable[Any],
    fallbacks: Callable[[Any], Iterable[Any]], providers: Collection[str],
) -> PortalMetrics:
    """The app's instruments; under multiprocess mode, its directory is prepared first."""
    if not enabled:
        return NULL_METRICS
    if multiproc_dir is not None and not multiprocess_mode():
        raise MetricsSetupError(
            "PROMETHEUS_MULTIPROC_DIR is only in .env: put it in the server's environment "
            "(prometheus-client reads it when it is imported)"
        )
    if multiprocess_mode():
        prepare_directory(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    # `_created` series double the series count and multiprocess mode has none: one view.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    return PortalMetrics(label_sets(specialists, fallbacks, providers))
