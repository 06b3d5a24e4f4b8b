"""Provider failures, mapped from each API's wire format into one small tree."""

from __future__ import annotations

from backend.errors import PortalError
from backend.providers.base import Usage


class ProviderError(PortalError):
    """An upstream LLM call failed; `provider` names which API.

    `retry_after` is the provider's hint in seconds (a `retry-after` header or body field),
    on any retryable failure that carries one. `billed` is False when the provider refused
    before generating anything (an error status, an error body in place of an answer), so
    the call cost nothing; None when we cannot know. `usage` holds the counts the provider
    reported before a stream failed midway, which the usage record keeps.
    """

    code = "upstream_error"
    retryable = False

    def __init__(
        self, message: str, *, provider: str, status: int | None = None,
        retry_after: float | None = None, billed: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.retry_after = retry_after
        self.billed = billed
        self.usage: Usage | None = None

    def body(self) -> dict[str, object]:
        """The error body, naming the provider that failed."""
        return {**super().body(), "provider": self.provider}


class ProviderAuthError(ProviderError):
    """The provider refused our credentials (401/403)."""

    code = "upstream_auth"


class ProviderBadRequest(ProviderError):
    """The provider rejected the request itself (400/404/413/422); retrying will not help."""

    code = "upstream_bad_request"


class ProviderRateLimited(ProviderError):
    """The provider throttled us (429); `retry_after` is its hint in seconds, if it gave one."""

    code = "upstream_rate_limited"
    retryable = True

    def __init__(
        self, message: str, *, provider: str, status: int | None = 429,
        retry_after: float | None = None, billed: bool | None = None,
    ) -> None:
        super().__init__(
            message, provider=provider, status=status, retry_after=retry_after, billed=billed
        )


class ProviderUnavailable(ProviderError):
    """The provider is down, overloaded (5xx, Anthropic 529) or unreachable."""

    code = "upstream_unavailable"
    retryable = True


class ProviderTimeout(ProviderError):
    """No answer (or no next chunk) within the configured bound."""

    code = "upstream_timeout"
    retryable = True


class ProviderStreamCut(ProviderError):
    """A stream ended without its terminal event, or broke mid-way."""

    code = "upstream_stream_cut"
    retryable = True


class ProviderNotConfigured(PortalError):
    """A specialist's provider has no API key; `variable` names the setting to fill in."""

    code = "provider_not_configured"

    def __init__(self, message: str, *, provider: str, variable: str) -> None:
        super().__init__(message)
        self.provider = provider
        self.variable = variable
