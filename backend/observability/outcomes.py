"""How a chat request ended, as the fixed `outcome` label of `portal_requests_total`.

One function from the error tree (or a framework exception) to one of a closed set of
values, so dashboards can rely on the set and a new error class can never add a label.
"""

from __future__ import annotations

from typing import Final

from backend.errors import InvalidRequest, PortalError
from backend.providers.errors import ProviderError, ProviderNotConfigured, ProviderTimeout
from backend.ratelimit.base import RateLimiterUnavailable, RateLimitExceeded
from backend.resilience.disconnect import ClientDisconnected
from backend.specialists.manager import SpecialistNotFound

OUTCOMES: Final = (
    "ok", "client_error", "rate_limited", "budget_exceeded", "forbidden", "upstream_error",
    "timeout", "client_disconnected", "internal_error",
)

# Codes of refusals other packages raise (identity, budgets, the guard): matched by code,
# so this module needs no import from them and their classes can move freely. A test
# raises each real class and checks its outcome, so a renamed code cannot slip through.
_BUDGET_CODES = frozenset({"budget_exceeded", "budget_unpriced"})
_FORBIDDEN_CODES = frozenset(
    {"forbidden", "token_missing", "token_invalid", "token_expired", "untrusted_frontend"}
)
# The portal itself could not decide (its budget store, guard, IdP keys or governance
# database failed): a 503 that is ours, not the caller's and not the provider's.
_UNAVAILABLE_CODES = frozenset(
    {"budget_unavailable", "pii_guard_failed", "auth_unavailable", "governance_unavailable"}
)


def outcome_of(exc: BaseException | None) -> str:
    """The outcome label for a request that ended with `exc` (None: it succeeded)."""
    if exc is None:
        return "ok"
    if isinstance(exc, (RateLimitExceeded, RateLimiterUnavailable)):
        return "rate_limited"
    if isinstance(exc, ProviderTimeout):
        return "timeout"
    if isinstance(exc, (ProviderError, ProviderNotConfigured)):
        return "upstream_error"
    if isinstance(exc, ClientDisconnected) or _cancelled(exc):
        return "client_disconnected"
    if isinstance(exc, (InvalidRequest, SpecialistNotFound)):
        return "client_error"
    if isinstance(exc, PortalError):
        if exc.code in _BUDGET_CODES:
            return "budget_exceeded"
        if exc.code in _FORBIDDEN_CODES:
            return "forbidden"
        if exc.code in _UNAVAILABLE_CODES or exc.code == "internal_error":
            return "internal_error"
        return "client_error"
    if _is_validation_error(exc):
        return "client_error"
    return "internal_error"


def outcome_of_kind(kind: str | None, exc: BaseException | None) -> str:
    """The outcome of a finished interaction from its usage record's `error_kind`."""
    if kind is None:
        return "ok"
    if exc is not None:
        return outcome_of(exc)
    if kind == "client_disconnected":
        return "client_disconnected"
    return "internal_error"


# CancelledError / GeneratorExit: the client went away (or the server is stopping); the
# others are Starlette's names for a client gone from a WebSocket or a request body.
_GONE = frozenset(
    {"CancelledError", "WebSocketDisconnect", "WebSocketDisconnected", "ClientDisconnect"}
)


def _cancelled(exc: BaseException) -> bool:
    return isinstance(exc, GeneratorExit) or type(exc).__name__ in _GONE


def _is_validation_error(exc: BaseException) -> bool:
    # FastAPI's RequestValidationError and pydantic's ValidationError: a malformed body.
    return type(exc).__name__ in ("RequestValidationError", "ValidationError")
