"""The one place that knows HTTP statuses: the error tree in, JSON error responses out."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from backend.api.deps import AdminAuthRequired, MetricsAuthRequired
from backend.auth.apikeys import ApiKeyNotFound
from backend.auth.errors import AuthError, AuthUnavailable, Forbidden, SignInFailed
from backend.budgets.errors import (
    BudgetExceeded,
    BudgetUnavailable,
    BudgetUnpriced,
    InvalidBudget,
)
from backend.chat.errors import ContentFiltered, ContentRefused, OutputBudgetExhausted
from backend.errors import (
    BodyReadTimeout,
    InvalidRequest,
    PortalError,
    RequestTooLarge,
    UnsupportedMediaType,
)
from backend.governance.errors import (
    GovernanceUnavailable,
    GovernedSpecialistNotFound,
    SelfApproval,
    SpecialistsReadOnly,
    VersionConflict,
    VersionNotFound,
)
from backend.guard.errors import GuardFailed
from backend.observability.safe_text import one_line
from backend.openai_api.errors import is_openai_path, openai_error
from backend.providers.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderStreamCut,
    ProviderTimeout,
    ProviderUnavailable,
)
from backend.ratelimit.base import RateLimiterUnavailable, RateLimitExceeded
from backend.ratelimit.failures import AuthThrottled
from backend.resilience.breaker import CircuitOpen
from backend.resilience.disconnect import ClientDisconnected
from backend.specialists.manager import SpecialistNotFound
from backend.web.router import AssetNotFound

log = logging.getLogger(__name__)


class JSONError(Response):
    """A JSON response encoded with orjson (FastAPI's ORJSONResponse is deprecated)."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        """Encode the body."""
        return orjson.dumps(content)


# Most specific first: the first class an error is an instance of decides its status.
STATUS_BY_ERROR: tuple[tuple[type[PortalError], int], ...] = (
    (RequestTooLarge, 413),
    (BodyReadTimeout, 408),
    (UnsupportedMediaType, 415),
    (AdminAuthRequired, 401),
    (AuthError, 401),
    (SignInFailed, 400),
    (Forbidden, 403),
    (AuthUnavailable, 503),
    (ApiKeyNotFound, 404),
    (MetricsAuthRequired, 401),
    (InvalidBudget, 422),
    (SelfApproval, 403),
    (GovernedSpecialistNotFound, 404),
    (VersionNotFound, 404),
    (VersionConflict, 409),
    (SpecialistsReadOnly, 409),
    (GovernanceUnavailable, 503),
    (InvalidRequest, 422),
    (SpecialistNotFound, 404),
    (AssetNotFound, 404),
    (RateLimitExceeded, 429),
    # Payment Required: the spend cap, not the request, is what stops it (nothing upstream).
    (BudgetExceeded, 402),
    (BudgetUnpriced, 402),
    (BudgetUnavailable, 503),
    (AuthThrottled, 429),
    (RateLimiterUnavailable, 503),
    (GuardFailed, 503),
    (ProviderNotConfigured, 503),
    # nginx's "client closed request": logged only, since nobody is there to read it.
    (ClientDisconnected, 499),
    (CircuitOpen, 503),
    # The call succeeded but produced no answer: refused or blocked content is the request's
    # (sending it again ends the same way); a budget spent on reasoning is the specialist's.
    (ContentRefused, 422),
    (ContentFiltered, 422),
    (OutputBudgetExhausted, 502),
    (ProviderTimeout, 504),
    (ProviderRateLimited, 503),
    (ProviderUnavailable, 503),
    (ProviderAuthError, 502),
    (ProviderBadRequest, 502),
    (ProviderStreamCut, 502),
    (ProviderError, 502),
)


def status_for(exc: PortalError) -> int:
    """The HTTP status for a domain error (500 for one with no mapping)."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _respond(
    request: Request, body: dict[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> JSONError:
    return _shaped(request.url.path, request.method, body, status, headers)


def _shaped(
    path: str, method: str, body: dict[str, Any], status: int,
    headers: Mapping[str, str] | None = None, *, keep_status: bool = False,
) -> JSONError:
    # The OpenAI-compatible API answers in OpenAI's error shape, so its clients' SDKs raise
    # their usual exception classes; everything else keeps the portal's shape.
    if is_openai_path(path):
        shaped_status, body = openai_error(status, body, method=method, path=path)
        status = status if keep_status else shaped_status
    return JSONError(body, status_code=status, headers=headers)


def refusal_response(
    exc: PortalError, *, path: str, method: str, request_id: str | None
) -> JSONError:
    """The response to a request refused before routing (the front door's 408 / 413).

    It closes the connection: the rest of the body is never read, so the connection cannot
    carry another request. /v1 gets OpenAI's error shape but keeps the HTTP status (413,
    408), which says what happened on the wire better than a 400 would.
    """
    body = {**exc.body(), "request_id": request_id}
    return _shaped(
        path, method, body, status_for(exc), {"Connection": "close"}, keep_status=True
    )


async def portal_error(request: Request, exc: Exception) -> JSONError:
    """Any `PortalError` -> its status and JSON body (Retry-After where one applies)."""
    assert isinstance(exc, PortalError)
    status = status_for(exc)
    headers: dict[str, str] = {}
    # A provider's hint when waiting helps (a throttle, an overload), our own cool-downs too.
    retry_after = getattr(exc, "retry_after", None)
    waits = isinstance(exc, (CircuitOpen, AuthThrottled)) or (
        isinstance(exc, ProviderError) and exc.retryable
    )
    if waits and retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    if isinstance(exc, (AdminAuthRequired, MetricsAuthRequired)):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = www_authenticate(exc)
    if isinstance(exc, ProviderError):
        # exc.message is one line already (PortalError escapes it): upstream text cannot forge.
        log.warning("upstream failure %s from %s: %s", exc.code, exc.provider, exc.message)
    return _respond(request, {**exc.body(), "request_id": _request_id(request)}, status, headers)


def www_authenticate(exc: AuthError) -> str:
    """RFC 6750's challenge: no error code when no credentials came, else invalid_token."""
    if exc.bearer_error is None:
        return 'Bearer realm="ai-portal"'
    # The description is our fixed text (never the token); quotes would break the header.
    description = exc.message.replace('"', "'")
    return (
        f'Bearer realm="ai-portal", error="{exc.bearer_error}", '
        f'error_description="{description}"'
    )


def problems(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors as the fields at fault: where, what, which rule; never the input."""
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in errors
    ]


async def validation_error(request: Request, exc: Exception) -> JSONError:
    """Malformed or invalid bodies -> 422 with the fields at fault (never the input echoed)."""
    assert isinstance(exc, RequestValidationError)
    return _respond(
        request,
        {
            "error": "invalid_request",
            "message": "the request body is not valid",
            "detail": problems(exc.errors()),
            "request_id": _request_id(request),
        },
        422,
    )


async def http_error(request: Request, exc: Exception) -> JSONError:
    """Framework errors (404 route, 405 method) in the same JSON shape."""
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(sorted(_allowed_methods(request)))
    return _respond(
        request,
        {"error": f"http_{exc.status_code}", "message": str(exc.detail)},
        exc.status_code,
        headers,
    )


def _allowed_methods(request: Request) -> set[str]:
    # Starlette's 405 names only the first route that matched the path; a path served by
    # several routes (GET and POST /keys) must list every method they serve.
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return methods


async def unexpected_error(request: Request, exc: Exception) -> JSONError:
    """A bug: log it with its trace, show the client only a request id."""
    log.exception("unhandled error on %s", one_line(request.url.path), exc_info=exc)
    return _respond(
        request,
        {
            "error": "internal_error",
            "message": "internal error",
            "request_id": _request_id(request),
        },
        500,
    )


def install(app: FastAPI) -> None:
    """Register every handler on the app."""
    app.add_exception_handler(PortalError, portal_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
