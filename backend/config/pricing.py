"""Cost estimation: genai-prices' maintained price table, with per-model overrides.

A model with no known price costs `None`, never a made-up zero: finance must be able
to tell "free" from "unknown".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from genai_prices import Usage as PriceUsage
from genai_prices import calc_price
from genai_prices.data_snapshot import get_snapshot

from backend.providers.base import Usage

# genai-prices knows these providers by the same ids; the rest are ours.
_PRICE_PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "google": "google"}
# Providers whose calls cost nothing by construction.
_FREE_PROVIDERS = {"demo"}
# genai-prices' prices can change on a date (conditional prices): re-resolve this often.
_RATES_TTL_SECONDS = 3600.0
# Of a model's price fields, the ones our usage feeds; any other per-call charge (a price per
# request) or a tiered price sends the model down the library's full calculation instead.
_TOKEN_FIELDS = {"input_mtok", "cache_read_mtok", "output_mtok"}
_ZERO_USAGE_FIELDS = {"cache_write_mtok", "web_searches_kcount", "storage_searches_kcount"}


@dataclass(frozen=True, slots=True)
class _FlatRates:
    """USD per million tokens for a model whose price is flat (no tiers, no per-request fee)."""

    input: float
    cached_input: float
    output: float


class PriceBook:
    """Estimates the USD cost of one call from its provider, model and usage."""

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, float]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # overrides: {"model": {"input_per_mtok": x, "output_per_mtok": y,
        #                        "cached_input_per_mtok": z (optional)}}
        self._overrides = dict(overrides)
        self._clock = clock
        # (provider id, model) -> (flat rates or None for "use the full calculation", expiry)
        self._rates: dict[tuple[str, str], tuple[_FlatRates | None, float]] = {}

    def estimate(self, provider: str, model: str, usage: Usage | None) -> float | None:
        """The estimated cost in USD, or None when the price (or the usage) is unknown."""
        if usage is None:
            return None
        override = self._overrides.get(model)
        if override is not None:
            return _from_override(override, usage)
        if provider in _FREE_PROVIDERS:
            return 0.0
        provider_id = _PRICE_PROVIDER_IDS.get(provider)
        if provider_id is None:
            return None
        try:
            rates = self._flat_rates(provider_id, model)
        except LookupError:
            return None
        if rates is not None and not usage.cache_write_tokens:
            # The same arithmetic genai-prices does for a flat price, without its per-call
            # unit registry walk (a tenth of /chat/send's CPU before this fast path).
            return _linear(rates.input, rates.cached_input, rates.output, usage)
        try:
            price = calc_price(
                PriceUsage(
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cache_read_tokens=usage.cached_input_tokens or None,
                    # Anthropic's cache writes, priced above input (1.25x; 2x for the
                    # 1-hour ones, which are a part of cache_write_tokens).
                    cache_write_tokens=usage.cache_write_tokens or None,
                    cache_write_1h_tokens=usage.cache_write_1h_tokens or None,
                ),
                model_ref=model,
                provider_id=provider_id,
            )
        except LookupError:
            return None
        return float(price.total_price)


    def _flat_rates(self, provider_id: str, model: str) -> _FlatRates | None:
        """The model's flat rates, cached for an hour; None when its price is not flat."""
        key = (provider_id, model)
        now = self._clock()
        cached = self._rates.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        _, info = get_snapshot().find_provider_model(model, None, provider_id, None)
        fields = vars(info.get_prices(datetime.now(UTC)))
        rates = None
        priced = {name for name, value in fields.items() if value is not None}
        token_rates = [fields.get(name) for name in _TOKEN_FIELDS]
        if priced <= _TOKEN_FIELDS | _ZERO_USAGE_FIELDS and all(
            rate is None or isinstance(rate, Decimal) for rate in token_rates
        ):
            input_rate = float(fields.get("input_mtok") or 0)
            cache_read = fields.get("cache_read_mtok")
            rates = _FlatRates(
                input=input_rate,
                cached_input=input_rate if cache_read is None else float(cache_read),
                output=float(fields.get("output_mtok") or 0),
            )
        self._rates[key] = (rates, now + _RATES_TTL_SECONDS)
        return rates


def _from_override(override: Mapping[str, float], usage: Usage) -> float:
    input_rate = override.get("input_per_mtok", 0.0)
    return _linear(
        input_rate,
        override.get("cached_input_per_mtok", input_rate),
        override.get("output_per_mtok", 0.0),
        usage,
    )


def _linear(input_rate: float, cached_rate: float, output_rate: float, usage: Usage) -> float:
    # Cached tokens are part of input_tokens (see Usage), billed at their own rate.
    cached = usage.cached_input_tokens or 0
    total = (
        (usage.input_tokens - cached) * input_rate
        + cached * cached_rate
        + usage.output_tokens * output_rate
    )
    return total / 1_000_000
