"""Data classification levels: what a specialist handles, and what a provider is cleared for."""

from __future__ import annotations

from typing import Literal

# Lowest to highest: a specialist may use a provider only if its level is at most the
# provider's ceiling (PROVIDER_CLASSIFICATION).
Classification = Literal["public", "internal", "confidential", "restricted"]
LEVELS: tuple[Classification, ...] = ("public", "internal", "confidential", "restricted")
DEFAULT_CEILING: Classification = "internal"


def allowed(level: Classification, ceiling: Classification) -> bool:
    """Whether data of `level` may go to a provider cleared up to `ceiling`."""
    return LEVELS.index(level) <= LEVELS.index(ceiling)
