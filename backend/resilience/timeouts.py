"""Each provider's per-attempt bounds, from settings: global defaults, then overrides."""

from __future__ import annotations

from backend.config.settings import Settings
from backend.providers.http import Timeouts


def _total(settings: Settings, provider: str) -> float:
    # The *_TIMEOUT_SECONDS settings predate the others and stay each attempt's total cap;
    # an OpenAI-compatible server gets OpenAI's, since it speaks the same API.
    totals = {
        "openai": settings.openai_timeout_seconds,
        "openai_compatible": settings.openai_timeout_seconds,
        "anthropic": settings.anthropic_timeout_seconds,
        "google": settings.google_timeout_seconds,
    }
    return totals.get(provider, max(totals.values()))


def provider_timeouts(settings: Settings, provider: str) -> Timeouts:
    """The connect, first-token, stream-idle and total bounds for one provider."""
    override = settings.provider_timeouts.get(provider, {})
    return Timeouts(
        connect=override.get("connect", settings.connect_timeout_seconds),
        total=override.get("total", _total(settings, provider)),
        stream_idle=override.get("idle", settings.stream_idle_timeout_seconds),
        first_token=override.get("first_token", settings.first_token_timeout_seconds),
    )
