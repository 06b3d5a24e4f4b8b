"""FastAPI dependencies, as Annotated aliases routes can declare."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import aiohttp
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.responses import Response

from backend.api.handler import lean_handler
from backend.auth.authenticator import Authenticator, bearer_token
from backend.auth.errors import AuthError, Forbidden
from backend.auth.identity import Identity
from backend.auth.policy import is_admin
from backend.budgets.ledger import BudgetNote, Ledger
from backend.chat.context import RequestContext
from backend.chat.service import ChatService
from backend.config.settings import Settings
from backend.errors import PortalError, UnsupportedMediaType
from backend.frontdoor.connections import ClientConnections
from backend.governance.service import Governance
from backend.governance.sync import SnapshotSync
from backend.observability.metrics import PortalMetrics
from backend.observability.outcomes import outcome_of
from backend.observability.safe_text import one_line
from backend.observability.tracing import Tracing
from backend.providers.factory import ProviderFactory
from backend.ratelimit.base import RateDecision
from backend.ratelimit.failures import FailureThrottle
from backend.ratelimit.gate import RateLimits
from backend.specialists.manager import SpecialistManager
from backend.usage.recorder import UsageRecorder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    """Everything built at start-up and shared by requests; lives on `app.state.services`."""

    settings: Settings
    session: aiohttp.ClientSession
    engine: AsyncEngine
    specialists: SpecialistManager
    providers: ProviderFactory
    recorder: UsageRecorder
    rate_limits: RateLimits
    chat: ChatService
    ws_clients: ClientConnections  # open WebSockets per client address
    auth: Authenticator
    metrics: PortalMetrics
    tracing: Tracing | None = None
    ledger: Ledger | None = None  # None: BUDGET_BACKEND=off
    # SPECIALISTS_SOURCE=database: the versions' lifecycle and the poll keeping `specialists`
    # current; None with SPECIALISTS_SOURCE=file.
    governance: Governance | None = None
    specialist_sync: SnapshotSync | None = None


def get_services(request: HTTPConnection) -> Services:
    """The app's services (built by the lifespan)."""
    services: Services = request.app.state.services
    return services


async def _services(request: Request) -> Services:
    # `async def` on purpose, as for every cheap dependency here: FastAPI runs a plain
    # `def` dependency in its thread pool, a thread round trip on every request.
    return get_services(request)


async def app_settings(request: Request) -> Settings:
    """The settings the app was created with (tests pass their own to `create_app`)."""
    settings: Settings = request.app.state.settings
    return settings


ServicesDep = Annotated[Services, Depends(_services)]
SettingsDep = Annotated[Settings, Depends(app_settings)]


def state_of(connection: HTTPConnection) -> dict[str, Any]:
    """The request's state as the dict behind `connection.state`: the chat path reads and
    writes it several times a request, and each `connection.state.x` goes through
    Starlette's State object and its Python-level `__getattr__`."""
    state: dict[str, Any] = connection.scope.setdefault("state", {})
    return state


async def identify(connection: HTTPConnection) -> Identity:
    """The caller's identity, resolved once per request (STYLE 13) and kept on its state."""
    state = state_of(connection)
    identity: Identity | None = state.get("identity")
    if identity is None:
        identity = await get_services(connection).auth.identify(connection)
        state["identity"] = identity
    return identity


IdentityDep = Annotated[Identity, Depends(identify)]


async def take_rate_limit_token(
    connection: HTTPConnection, services: Services, identity: Identity,
    specialist_id: str | None = None,
) -> RateDecision:
    """Take one token for one chat request on any transport (HTTP or WebSocket message).

    The user bucket is the verified identity's. The decision is kept on the connection so
    every response, errors included, carries it; the caller raises (or sends)
    `decision.refusal()` when there is one.
    """
    decision = await services.rate_limits.decide(
        peer=connection.client.host if connection.client else None,
        forwarded_for=connection.headers.getlist("x-forwarded-for"),
        user=identity.user_hash,
        specialist=specialist_id,
    )
    state_of(connection)["rate_limit"] = decision
    return decision


async def body_field(request: Request, name: str) -> str | None:
    """A string field of the JSON body, or None (malformed bodies are answered later)."""
    # request.json() caches its result, so FastAPI's own body parsing reuses it.
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        # Malformed, invalid UTF-8 (a ValueError) or nested deeper than the JSON parser
        # recurses: answered with a 4xx by the body parser; the general buckets still apply.
        return None
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


SpecialistOf = Callable[[Request, Services], Awaitable[str | None]]


async def specialist_in_body(request: Request, services: Services) -> str | None:
    """The specialist a /chat body names."""
    return await body_field(request, "specialist_id")


async def enforce_rate_limit(
    request: Request, services: Services, specialist_of: SpecialistOf = specialist_in_body
) -> RateDecision:
    """Identify the caller, then take this request's token (once), before its body is
    validated; 401 when unidentified, 429/503 when refused.

    The body is only read for the specialist when some specialist has a limit of its own.
    """
    decision: RateDecision | None = state_of(request).get("rate_limit")
    if decision is None:
        identity = await identify(request)
        specialist = None
        if services.rate_limits.needs_specialist:
            specialist = await specialist_of(request, services)
        decision = await take_rate_limit_token(request, services, identity, specialist)
    refusal = decision.refusal()
    if refusal is not None:
        raise refusal
    return decision


def require_json(request: Request) -> None:
    """Refuse a chat body that is not JSON (415), before it costs a rate-limit token.

    A web page may POST `text/plain` (or a form) to any origin without a CORS preflight;
    refused only after taking a token, such requests would drain a user's limit from any
    site. A body with no Content-Type was never parsed as JSON (FastAPI answered 422).
    """
    content_type = request.headers.get("content-type", "")
    media = content_type.partition(";")[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise UnsupportedMediaType(
            "chat requests must be sent as Content-Type: application/json"
        )


class RateLimitedRoute(APIRoute):
    """A route that takes its token before FastAPI reads the body, so a malformed body is
    limited too and its 422 carries the rate-limit headers like every other response.
    Subclasses say where a request names its specialist (`specialist_of`)."""

    specialist_of: SpecialistOf = staticmethod(specialist_in_body)
    transport: str | None = None  # the metrics' label; None: `stream` or `send` by path
    # The handler (rate limit, then the lean handler) when the lean one serves this route:
    # ExactPaths calls it without FastAPI's per-request wrapper. None: FastAPI's handler.
    lean_entry: Callable[[Request], Coroutine[Any, Any, Response]] | None = None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler (or the lean one of a chat-shaped route), preceded by the rate
        limit."""
        lean = lean_handler(self, chat_call)
        handler = lean or super().get_route_handler()
        specialist_of = self.specialist_of
        transport = self.transport or ("stream" if self.path.endswith("/stream") else "send")

        async def limited(request: Request) -> Response:
            services = get_services(request)
            state_of(request)["transport"] = transport
            try:
                require_json(request)
                await enforce_rate_limit(request, services, specialist_of)
                return await handler(request)
            except BaseException as exc:
                count_refusal(request, services.metrics, transport, exc)
                raise

        self.lean_entry = limited if lean is not None else None
        return limited


def count_refusal(
    connection: HTTPConnection, metrics: PortalMetrics, transport: str, exc: BaseException
) -> None:
    """Count a chat request that failed before the chat service took it (which counts its own)."""
    context: RequestContext | None = state_of(connection).get("chat_context")
    if context is None:
        metrics.chat_refused(transport, None, outcome_of(exc))
    elif not context.counted:  # refused after its specialist was known: a 402, a 403
        metrics.chat_refused(transport, context.specialist_id, outcome_of(exc))



def request_context(
    connection: HTTPConnection, identity: Identity, decision: RateDecision, *,
    request_id: str, received_at: float, transport: str,
) -> RequestContext:
    """One chat request's context on any transport (a WebSocket builds one per message);
    the budget's remaining USD goes on the connection's response headers (HTTP only)."""
    note = BudgetNote()
    state = state_of(connection)
    state["budget"] = note
    context = RequestContext(
        request_id=request_id,
        received_at=received_at,
        user_email_hash=identity.user_hash,
        rate_limit_key_kind=decision.key_kind,
        identity=identity,
        transport=transport,
        budget=note,
    )
    state["chat_context"] = context  # what `count_refusal` looks at
    return context


@dataclass(frozen=True, slots=True)
class ChatCall:
    """What a chat route needs besides its body: the services and the request's context."""

    services: Services
    context: RequestContext


async def chat_call(request: Request) -> ChatCall:
    """The one dependency of a chat route, on a route class that has taken the token.

    One dependency rather than three on purpose: FastAPI's per-dependency overhead was a
    visible share of /chat/send's CPU.
    """
    state = state_of(request)  # rate_limit, identity and transport set by RateLimitedRoute
    context = request_context(
        request, state["identity"], state["rate_limit"],
        request_id=state["request_id"], received_at=state["received_at"],
        transport=state["transport"],
    )
    return ChatCall(get_services(request), context)


ChatCallDep = Annotated[ChatCall, Depends(chat_call)]


class AdminAuthRequired(PortalError):
    """An admin endpoint was called without the right `Authorization: Bearer` token."""

    code = "unauthorized"


def _is_admin_token(request: Request, settings: Settings) -> bool:
    if settings.admin_token is None:
        return False
    try:
        token = bearer_token(request)
    except AuthError:
        return False
    expected = settings.admin_token.get_secret_value().encode()
    # Constant-time, so the token can't be guessed byte by byte from response times.
    return token is not None and hmac.compare_digest(token.encode(), expected)


async def require_admin(request: Request, settings: SettingsDep) -> Identity:
    """Admin endpoints: ADMIN_TOKEN (break-glass), or a caller in ADMIN_GROUPS.

    404 while neither can exist (as if absent); 401 without credentials, 403 for a known
    caller who is not an admin; 429 for a client with too many recent failed
    authentications (no credential is even checked then). In AUTH_MODE=none only
    ADMIN_TOKEN counts.
    """
    services = get_services(request)
    groups_count = bool(settings.admin_groups) and services.auth.required
    if settings.admin_token is None and not groups_count:
        raise StarletteHTTPException(404, "Not Found")
    failures, client = _failure_throttle(request)
    failures.check(client)
    if _is_admin_token(request, settings):
        failures.succeeded(client)
        return Identity(method="admin_token")
    try:
        if not groups_count:
            raise AdminAuthRequired("this endpoint needs Authorization: Bearer <ADMIN_TOKEN>")
        identity = await identify(request)
    except (AdminAuthRequired, AuthError):
        _count_failure(request, failures, client, "admin")
        raise
    failures.succeeded(client)
    if not is_admin(identity, settings.admin_groups):
        raise Forbidden("this endpoint is for members of ADMIN_GROUPS")
    return identity


AdminDep = Annotated[Identity, Depends(require_admin)]


def _failure_throttle(request: Request) -> tuple[FailureThrottle, str]:
    """The failed-authentication throttle and this request's client key in it.

    One throttle for ADMIN_TOKEN and METRICS_TOKEN: a client gets ADMIN_AUTH_MAX_FAILURES
    guesses per window at either secret, not that many at each.
    """
    rate_limits = get_services(request).rate_limits
    client = rate_limits.client_ip(
        request.client.host if request.client else None, request.headers.getlist("x-forwarded-for")
    )
    return rate_limits.admin_failures, client


def _count_failure(request: Request, failures: FailureThrottle, client: str, what: str) -> None:
    count = failures.failed(client)
    log.warning(  # never the guessed value: it may be a near-miss of the real token
        "%s authentication failed from %s on %s (%d of %d in %g s)", what, one_line(client),
        one_line(request.url.path), count, failures.max_failures, failures.window_seconds,
    )


class MetricsAuthRequired(PortalError):
    """GET /metrics was called without METRICS_TOKEN as its bearer token."""

    code = "unauthorized"


async def require_metrics_token(request: Request, settings: SettingsDep) -> None:
    """/metrics: open while METRICS_TOKEN is unset (like /health), else 401 without it, and
    429 for a client with too many recent failed authentications (as for admin routes)."""
    if settings.metrics_token is None:
        return
    failures, client = _failure_throttle(request)
    failures.check(client)
    expected = settings.metrics_token.get_secret_value().encode()
    try:
        token = bearer_token(request)
    except AuthError:
        token = None
    # Constant-time, so the token can't be guessed byte by byte from response times.
    if token is None or not hmac.compare_digest(token.encode(), expected):
        _count_failure(request, failures, client, "metrics")
        raise MetricsAuthRequired("this endpoint needs Authorization: Bearer <METRICS_TOKEN>")
    failures.succeeded(client)
