"""The values each metric label may take: configuration (specialists, providers, models)
or a fixed set. Anything else becomes `other`, so no request can add a series."""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable
from typing import Any, Final

ATTEMPT_RESULTS: Final = (
    "ok", "rate_limited", "unavailable", "timeout", "stream_cut", "bad_request", "auth",
    "error", "cancelled",
)
NONE: Final = "none"  # nothing resolved yet (a request refused before its specialist)
OTHER: Final = "other"  # a value outside the configured set


class LabelSets:
    """The values each label may take; anything else maps to `other`."""

    def __init__(
        self, *, specialists: Iterable[str], providers: Iterable[str], models: Iterable[str]
    ) -> None:
        self.specialists = frozenset(specialists)
        self.providers = frozenset(providers)
        self.models = frozenset(models)

    def specialist(self, value: str | None) -> str:
        """A configured specialist id, `none` when unresolved, else `other`."""
        if not value:
            return NONE
        return value if value in self.specialists else OTHER

    def provider(self, value: str | None) -> str:
        """A provider name from the factory, `none` when unresolved, else `other`."""
        if not value:
            return NONE
        return value if value in self.providers else OTHER

    def model(self, value: str | None) -> str:
        """A model some specialist or fallback is configured with, `none`, or `other`."""
        if not value:
            return NONE
        return value if value in self.models else OTHER


def label_sets(
    specialists: Iterable[Any], fallbacks: Callable[[Any], Iterable[Any]],
    providers: Collection[str],
) -> LabelSets:
    """Label sets from the loaded specialists: their ids, and every model they may call."""
    enabled = list(specialists)
    models = {s.model for s in enabled}
    for specialist in enabled:
        models.update(route.model for route in fallbacks(specialist))
    return LabelSets(
        specialists=(str(s.id) for s in enabled), providers=providers, models=models
    )


def attempt_result(exc: BaseException | None) -> str:
    """An upstream attempt's `result` label, from the error it raised (None: answered)."""
    if exc is None:
        return "ok"
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code.startswith("upstream_"):
        result = code.removeprefix("upstream_")
        return result if result in ATTEMPT_RESULTS else "error"
    if isinstance(exc, GeneratorExit) or type(exc).__name__ == "CancelledError":
        return "cancelled"
    return "error"


_CACHE_LIMIT = 10_000  # label children kept per instrument; past it, looked up each time


class LabelChildren:
    """Label children of one instrument, cached by raw label values (one dict lookup)."""

    __slots__ = ("_cache", "_metric", "_normalise")

    def __init__(self, metric: Any, normalise: Callable[..., tuple[str, ...]]) -> None:
        self._metric = metric
        self._normalise = normalise
        self._cache: dict[Hashable, Any] = {}

    def get(self, *raw: Any) -> Any:
        """The child for these raw values (normalised into the label set on first use)."""
        child = self._cache.get(raw)
        if child is None:
            child = self._metric.labels(*self._normalise(*raw))
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[raw] = child
        return child
