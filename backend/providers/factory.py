"""Builds providers from settings: an explicit name-to-builder mapping, no import tricks.

Providers are built once and share the one aiohttp session made at start-up. A specialist
names a provider (and, for `openai_compatible`, its own base URL and key variable); the
factory hands back the matching instance or says which variable is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp

from backend.config.settings import Settings
from backend.providers.anthropic import AnthropicProvider
from backend.providers.base import Provider
from backend.providers.demo import DemoProvider
from backend.providers.errors import ProviderNotConfigured
from backend.providers.google import GoogleProvider
from backend.providers.openai import OpenAIProvider
from backend.resilience.timeouts import provider_timeouts


@dataclass(frozen=True, slots=True)
class ProviderTarget:
    """What a specialist asks for: a provider name, plus its own endpoint when compatible."""

    provider: str
    base_url: str | None = None
    api_key_env: str | None = None


Builder = Callable[[Settings, aiohttp.ClientSession, ProviderTarget, str | None], Provider]


def _openai(
    s: Settings, session: aiohttp.ClientSession, t: ProviderTarget, key: str | None
) -> Provider:
    return OpenAIProvider(
        session,
        base_url=s.openai_base_url,
        api_key=key,
        timeouts=provider_timeouts(s, "openai"),
    )


def _compatible(
    s: Settings, session: aiohttp.ClientSession, t: ProviderTarget, key: str | None
) -> Provider:
    return OpenAIProvider(
        session,
        base_url=t.base_url or s.openai_base_url,
        api_key=key,
        name="openai_compatible",
        timeouts=provider_timeouts(s, "openai_compatible"),
    )


def _anthropic(
    s: Settings, session: aiohttp.ClientSession, t: ProviderTarget, key: str | None
) -> Provider:
    return AnthropicProvider(
        session,
        base_url=s.anthropic_base_url,
        api_key=key or "",
        api_version=s.anthropic_version,
        timeouts=provider_timeouts(s, "anthropic"),
    )


def _google(
    s: Settings, session: aiohttp.ClientSession, t: ProviderTarget, key: str | None
) -> Provider:
    return GoogleProvider(
        session,
        base_url=s.google_base_url,
        api_key=key or "",
        api_version=s.google_api_version,
        timeouts=provider_timeouts(s, "google"),
    )


def _demo(
    s: Settings, session: aiohttp.ClientSession, t: ProviderTarget, key: str | None
) -> Provider:
    return DemoProvider(chunk_delay_seconds=s.demo_chunk_delay_seconds)


BUILDERS: dict[str, Builder] = {
    "openai": _openai,
    "openai_compatible": _compatible,
    "anthropic": _anthropic,
    "google": _google,
    "demo": _demo,
}
PROVIDER_NAMES = tuple(sorted(BUILDERS))

# The setting each built-in provider's key comes from; `None` means no key is needed.
_KEY_VARIABLES: dict[str, str | None] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "google": "GOOGLE_API_KEY",
    "demo": None,
}


class UnknownProvider(ValueError):
    """A specialist names a provider the factory cannot build."""


def check_provider_name(name: str) -> None:
    """Raise `UnknownProvider` listing the valid names when `name` is not one of them."""
    if name not in BUILDERS:
        raise UnknownProvider(
            f"unknown provider {name!r}; valid providers are: {', '.join(PROVIDER_NAMES)}"
        )


class ProviderFactory:
    """Hands out one provider instance per target, built on first use and kept."""

    def __init__(
        self, settings: Settings, session: aiohttp.ClientSession, environ: Mapping[str, str]
    ) -> None:
        self._settings = settings
        self._session = session
        self._environ = environ
        self._built: dict[ProviderTarget, Provider] = {}

    def key_variable(self, target: ProviderTarget) -> str | None:
        """The variable that holds this target's key, or None when it needs none."""
        if target.provider == "openai_compatible":
            return target.api_key_env
        return _KEY_VARIABLES[target.provider]

    def api_key(self, target: ProviderTarget) -> str | None:
        """The key for this target, from settings (built-ins) or the named variable."""
        variable = self.key_variable(target)
        if variable is None:
            return None
        secret = getattr(self._settings, variable.lower(), None)
        if secret is not None and target.provider != "openai_compatible":
            return str(secret.get_secret_value()) or None
        return self._environ.get(variable) or None

    def is_configured(self, target: ProviderTarget) -> bool:
        """True when the target needs no key or has one."""
        return self.key_variable(target) is None or self.api_key(target) is not None

    def get(self, target: ProviderTarget) -> Provider:
        """The provider for `target`; `ProviderNotConfigured` names the missing variable."""
        provider = self._built.get(target)
        if provider is not None:
            return provider
        check_provider_name(target.provider)
        variable = self.key_variable(target)
        key = self.api_key(target)
        if variable is not None and key is None:
            raise ProviderNotConfigured(
                f"the {target.provider} provider is not configured: set {variable}",
                provider=target.provider,
                variable=variable,
            )
        provider = BUILDERS[target.provider](self._settings, self._session, target, key)
        self._built[target] = provider
        return provider
