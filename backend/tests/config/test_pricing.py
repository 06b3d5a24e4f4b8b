"""Pricing: genai-prices' table, its flat-price fast path, overrides, and null for unknown."""

from __future__ import annotations

import random

import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from backend.config.pricing import PriceBook
from backend.providers.base import Usage

MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "o4-mini"),
    ("openai", "gpt-5"),
    ("anthropic", "claude-sonnet-4-5"),
    ("google", "gemini-2.5-flash"),
    ("google", "gemini-2.5-pro"),
]


def _library(provider: str, model: str, usage: Usage) -> float:
    price = calc_price(
        PriceUsage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cached_input_tokens or None,
        ),
        model_ref=model,
        provider_id=provider,
    )
    return float(price.total_price)


@pytest.mark.parametrize(("provider", "model"), MODELS)
def test_estimates_equal_the_price_library_fast_path_or_not(provider: str, model: str) -> None:
    book = PriceBook({})
    rng = random.Random(f"{provider}/{model}")
    for _ in range(50):
        # Up to 300k input tokens, so tiered prices (Gemini Pro, Claude) cross their tiers.
        inputs = rng.randint(0, 300_000)
        usage = Usage(inputs, rng.randint(0, 40_000), rng.randint(0, inputs))
        assert book.estimate(provider, model, usage) == pytest.approx(
            _library(provider, model, usage), rel=1e-9, abs=1e-12
        )


def test_the_flat_fast_path_is_taken_for_flat_prices_and_cached() -> None:
    ticks = [0.0]
    book = PriceBook({}, clock=lambda: ticks[0])
    assert book.estimate("openai", "gpt-4o", Usage(1_000_000, 0, 0)) == pytest.approx(2.5)
    assert book._rates[("openai", "gpt-4o")][0] is not None  # flat: direct arithmetic
    ticks[0] = 7200.0  # past the hour: resolved again, same answer
    assert book.estimate("openai", "gpt-4o", Usage(0, 1_000_000, 0)) == pytest.approx(10.0)
    assert book._rates[("openai", "gpt-4o")][1] > 7200.0


def test_unknown_models_and_unknown_usage_cost_null_never_zero() -> None:
    book = PriceBook({})
    assert book.estimate("openai", "no-such-model-xyz", Usage(10, 10)) is None
    assert book.estimate("openai_compatible", "llama3.1", Usage(10, 10)) is None
    assert book.estimate("openai", "gpt-4o", None) is None
    assert book.estimate("demo", "demo-echo", Usage(10, 10)) == 0.0


def test_overrides_win_and_price_cached_tokens_at_their_rate() -> None:
    book = PriceBook(
        {"gpt-4o": {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "cached_input_per_mtok": 0.5}}
    )
    cost = book.estimate("openai", "gpt-4o", Usage(1_000_000, 1_000_000, 400_000))
    assert cost == pytest.approx(0.6 + 0.2 + 2.0)
    local = PriceBook({"llama3.1": {"input_per_mtok": 0.0, "output_per_mtok": 0.0}})
    assert local.estimate("openai_compatible", "llama3.1", Usage(10, 10)) == 0.0
