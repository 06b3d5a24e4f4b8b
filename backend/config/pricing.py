"""Cost estimation: genai-prices' maintained price table, with per-model overrides.

A model with no known price costs `None`, never a made-up zero: finance must be able
to tell "free" from "unknown".
"""

from __future__ import annotations

from collections.abc import Mapping

from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from backend.providers.base import Usage

# genai-prices knows these providers by the same ids; the rest are ours.
_PRICE_PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "google": "google"}
# Providers whose calls cost nothing by construction.
_FREE_PROVIDERS = {"demo"}


class PriceBook:
    """Estimates the USD cost of one call from its provider, model and usage."""

    def __init__(self, overrides: Mapping[str, Mapping[str, float]]) -> None:
        # overrides: {"model": {"input_per_mtok": x, "output_per_mtok": y,
        #                        "cached_input_per_mtok": z (optional)}}
        self._overrides = dict(overrides)

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
            price = calc_price(
                PriceUsage(
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cache_read_tokens=usage.cached_input_tokens or None,
                ),
                model_ref=model,
                provider_id=provider_id,
            )
        except LookupError:
            return None
        return float(price.total_price)


def _from_override(override: Mapping[str, float], usage: Usage) -> float:
    cached = usage.cached_input_tokens or 0
    input_rate = override.get("input_per_mtok", 0.0)
    cached_rate = override.get("cached_input_per_mtok", input_rate)
    total = (
        (usage.input_tokens - cached) * input_rate
        + cached * cached_rate
        + usage.output_tokens * override.get("output_per_mtok", 0.0)
    )
    return total / 1_000_000
