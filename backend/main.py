"""The FastAPI application: `create_app()` wires settings into services at start-up.

Run with `python -m uvicorn backend.main:app --port 8000`.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from pydantic_settings import SettingsError as SourceError

from backend.api import errors
from backend.api.context import RequestContextMiddleware
from backend.api.cors import LeanCORSMiddleware
from backend.api.deps import Services
from backend.api.openapi import document_limits
from backend.api.routing import ExactPaths
from backend.auth.apikeys import ApiKeys
from backend.auth.authenticator import build_authenticator
from backend.auth.startup import start_auth
from backend.budgets.factory import build_ledger
from backend.chat.context import ChatLimits
from backend.chat.service import ChatService
from backend.config.pricing import PriceBook
from backend.config.settings import Settings, get_settings
from backend.database.engine import make_engine
from backend.database.migrations import prepare_schema
from backend.frontdoor.body import BodyLimits
from backend.frontdoor.connections import ClientConnections
from backend.frontdoor.server import ServerHardening, ServerLimits
from backend.governance.startup import policy_of, start_governance
from backend.governance.versions import within_ceilings
from backend.guard.detect import Detector
from backend.guard.policy import Guard, PiiPolicy
from backend.observability.labels import label_sets
from backend.observability.logs import configure_logging
from backend.observability.metrics import PortalMetrics, build_metrics
from backend.observability.multiprocess import worker_exiting
from backend.observability.tracing import TraceContextMiddleware, Tracing
from backend.openai_api.models import check_aliases
from backend.providers.factory import PROVIDER_NAMES, ProviderFactory
from backend.ratelimit.factory import build_rate_limits, policy_from_settings
from backend.ratelimit.gate import RateLimits
from backend.resilience.runner import Resilience
from backend.routes import (
    admin_specialists,
    audit,
    auth_web,
    budgets,
    chat,
    health,
    keys,
    me,
    metrics,
    openai_compat,
    specialists,
    usage,
    ws,
)
from backend.specialists.manager import SpecialistManager
from backend.usage.identity import with_hash_key
from backend.usage.recorder import UsageRecorder
from backend.web import router as web
from backend.web.pages import WebPages

log = logging.getLogger("backend")

GC_YOUNG_THRESHOLD = 10_000


class SettingsError(SystemExit):
    """A setting is missing or wrong; the message names the environment variable."""


def load_settings() -> Settings:
    """Read settings, turning a validation error into a message naming each variable."""
    try:
        return get_settings()
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None
    except SourceError as exc:
        # A value that is not even parseable (bad JSON for a list): name the variable too.
        message = re.sub(r'field "(\w+)"', lambda m: f"field {m.group(1).upper()}", str(exc))
        raise SettingsError(f"invalid settings: {message}") from None


async def build_services(settings: Settings) -> Services:
    """Build every shared service from settings (called once, by the lifespan)."""
    settings = with_hash_key(settings)  # USER_HASH_SECRET, or the generated key file's
    # The file: what serves with SPECIALISTS_SOURCE=file, and the seed of an empty database.
    specialists = SpecialistManager.from_file(settings.specialists_file)
    engine = make_engine(
        settings.database_url, connect_timeout=settings.database_connect_timeout_seconds
    )
    try:  # the schema first: a stale one stops start-up with the command to run
        await prepare_schema(
            engine, url=settings.database_url, auto_migrate=settings.auto_migrate,
            deadline_seconds=3 * settings.database_connect_timeout_seconds,
        )
    except BaseException:
        await engine.dispose()
        raise
    governance, specialist_sync = None, None
    if settings.specialists_source == "database":
        governance, specialist_sync = await start_governance(settings, engine, specialists)
    else:  # the file alone: still nothing above a provider's ceiling is served
        specialists.replace(within_ceilings(specialists.all(), policy_of(settings).ceilings))
    check_aliases(settings.model_aliases, specialists)
    # Metric labels come from the specialists serving now (the database's, once loaded).
    metrics = build_metrics(
        enabled=settings.metrics_enabled, multiproc_dir=settings.prometheus_multiproc_dir,
        specialists=specialists.enabled(), fallbacks=specialists.fallbacks,
        providers=PROVIDER_NAMES,
    )
    tracing = Tracing.from_endpoint(
        settings.otel_exporter_otlp_endpoint, service_name=settings.otel_service_name,
        capture_content=settings.otel_instrumentation_genai_capture_message_content,
    )
    resilience = Resilience.from_settings(settings, metrics=metrics, tracing=tracing)
    rate_limits = await build_rate_limits(settings, specialists)
    rate_limits.metrics = metrics
    follow_specialists(specialists, settings, metrics, rate_limits)
    # One session for every user's upstream calls: a cookie one answer sets (a provider's
    # load balancer, say) must not ride along on someone else's next request, and keeping
    # none also spares each request the jar's filtering and updating.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300), raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    recorder = UsageRecorder.from_settings(settings, engine, metrics)
    recorder.start()
    providers = ProviderFactory(settings, session, os.environ)
    prices = PriceBook(settings.price_overrides)
    ledger = await build_ledger(settings, engine=engine, prices=prices, session=session)
    chat_service = ChatService(
        specialists=specialists,
        providers=providers,
        prices=prices,
        recorder=recorder,
        limits=ChatLimits(
            max_message_chars=settings.max_message_chars,
            max_history_messages=settings.max_history_messages,
            max_total_chars=settings.max_total_chars,
        ),
        resilience=resilience,
        metrics=metrics,
        tracing=tracing,
        guard=build_guard(settings),
        ledger=ledger,
        default_max_output_tokens=settings.budget_default_max_output_tokens,
    )
    auth = build_authenticator(
        settings, session, ApiKeys(engine, settings.hash_secret()), engine
    )
    return Services(
        settings=settings,
        session=session,
        engine=engine,
        specialists=specialists,
        providers=providers,
        recorder=recorder,
        rate_limits=rate_limits,
        chat=chat_service,
        ws_clients=ClientConnections(settings.ws_max_connections_per_client),
        auth=auth,
        metrics=metrics,
        tracing=tracing,
        ledger=ledger,
        governance=governance,
        specialist_sync=specialist_sync,
    )


def build_guard(settings: Settings) -> Guard:
    """The PII guard, with the portal default for specialists that set no `pii`."""
    detector = Detector(
        national_id_names=settings.pii_national_ids, phone_regions=settings.pii_phone_regions
    )
    default = PiiPolicy(mode=settings.pii_default_mode, types=tuple(settings.pii_default_types))
    return Guard(detector, default)


def follow_specialists(
    specialists: SpecialistManager, settings: Settings, metrics: PortalMetrics,
    rate_limits: RateLimits,
) -> None:
    """What derives from the serving set follows each swap, as the request path does:
    metric labels (a specialist created at runtime is counted under its id, not `other`)
    and per-specialist rate limits (a version's `rate_limit` is live with the version)."""

    def swapped() -> None:
        metrics.relabel(label_sets(specialists.enabled(), specialists.fallbacks, PROVIDER_NAMES))
        rate_limits.policy = policy_from_settings(settings, specialists)

    specialists.on_replace(swapped)


async def close_services(services: Services) -> None:
    """Drain usage records, then close connections, in that order."""
    if services.specialist_sync is not None:
        await services.specialist_sync.close()
    await services.recorder.close()
    if services.ledger is not None:  # after the recorder: its last records settle first
        await services.ledger.close()
    await services.rate_limits.close()
    await services.session.close()
    await services.engine.dispose()
    if services.tracing is not None:
        await asyncio.to_thread(services.tracing.shutdown)  # flushes batched spans
    if services.metrics.enabled and services.settings.prometheus_multiproc_dir is not None:
        worker_exiting(services.settings.prometheus_multiproc_dir)


def without_framework_telemetry() -> dict[str, Any]:
    """FastAPI's own OpenTelemetry spans and metrics (newer releases) switched off: the
    portal has its own (backend/observability), which a second set would duplicate, and
    FastAPI looks up OpenTelemetry's global providers on every request to decide."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application; tests pass their own settings."""
    settings = settings or load_settings()
    access_log = configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = await build_services(settings)
        app.state.settings = app.state.services.settings  # with the user-hash key resolved
        warm_up = start_auth(settings, app.state.services.auth)
        # Everything built so far lives as long as the process: move it out of the collector's
        # way, so the collections that requests trigger no longer walk the whole heap
        # (the price table, the ORM, the app) every time.
        gc.freeze()
        # A request's allocations come and go in bursts (JSON parsing, headers, tasks):
        # at the default threshold of 700 their peaks alone set off a young collection
        # every 7 requests or so, about 0.4 ms each: 60-80 us a request, some 8 % of its
        # CPU. What a request leaves in reference cycles is a handful of objects, so at
        # 10,000 the peaks pass and cycles are still collected, about once per 1,500
        # requests (measured under bench_budgets' load).
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        ready = len(app.state.services.specialists.enabled())
        log.info("AI Portal backend ready: %d specialists", ready)
        try:
            yield
        finally:
            warm_up.cancel()
            await close_services(app.state.services)

    # /docs and /redoc load Swagger UI and ReDoc from files this app serves (fastapi-offline
    # ships them), not from a public CDN; the validator badge would call out, so it is off.
    app = FastAPIOffline(
        title="AI Portal Backend",
        version="2.0.0",
        description="Chat with the portal's specialists over REST and Server-Sent Events.",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},
        **without_framework_telemetry(),
    )
    # Read by SettingsDep. Not a dependency override: while any is set, FastAPI rebuilds
    # every dependency's signature analysis on every request (over 10 % of /chat/send's CPU).
    app.state.settings = settings
    app.state.web_pages = WebPages.build(settings)  # the portal's own pages, read once
    # Innermost of the middleware: bodies are bounded before routing, and its refusals still
    # get CORS headers and a request id from the layers around it.
    app.add_middleware(
        BodyLimits,
        max_bytes=settings.request_byte_cap(),
        read_timeout=settings.body_read_timeout_seconds,
    )
    app.add_middleware(  # Starlette's CORS; requests without an Origin skip its header objects
        LeanCORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=[
            "X-Request-ID", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
            "Retry-After", "X-Budget-Remaining-USD",
        ],
    )
    app.add_middleware(RequestContextMiddleware, access_log=access_log)
    if settings.otel_exporter_otlp_endpoint:  # unset: not even a pass-through layer
        app.add_middleware(TraceContextMiddleware)
    # However uvicorn is started: bounded headers and WebSocket messages, and TRUSTED_PROXIES
    # alone decides who may name the client.
    app.add_middleware(
        ServerHardening,
        limits=ServerLimits(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_read_timeout_seconds,
            max_message_bytes=settings.request_byte_cap(),
        ),
    )
    errors.install(app)
    app.include_router(chat.router)
    app.include_router(specialists.router)
    app.include_router(health.router)
    # Listed only while some admin can exist (they answer 404 otherwise, as if absent).
    admins_exist = settings.admin_token is not None or (
        bool(settings.admin_groups) and settings.effective_auth_mode() != "none"
    )
    app.include_router(usage.router, include_in_schema=admins_exist)
    app.include_router(admin_specialists.router, include_in_schema=admins_exist)
    app.include_router(audit.router, include_in_schema=admins_exist)
    app.include_router(ws.router)
    app.include_router(openai_compat.completions)
    app.include_router(openai_compat.router)
    app.include_router(me.router)
    app.include_router(auth_web.router, include_in_schema=settings.sign_in_enabled())
    app.include_router(auth_web.session_router)
    # Listed whenever they answer: under AUTH_MODE=none too, where minting is refused (403,
    # saying why), the list is empty and a revocation finds no key, as documented. A 404
    # there would hide from a misconfigured front end why its users get no keys.
    app.include_router(keys.router)
    app.include_router(keys.admin_router, include_in_schema=admins_exist)
    app.include_router(metrics.router, include_in_schema=settings.metrics_enabled)
    app.include_router(budgets.router)
    budgets_on = settings.effective_budget_backend() != "off"
    app.include_router(budgets.admin_router, include_in_schema=admins_exist and budgets_on)
    app.include_router(budgets.audit_router, include_in_schema=admins_exist)
    document_limits(app, settings)
    app.include_router(web.router)
    # The chat routes by their paths, ahead of the router's walk (backend/api/routing.py).
    app.router.middleware_stack = ExactPaths(
        app.router.middleware_stack, app.router,
        [*chat.router.routes, *openai_compat.completions.routes],
    )
    return app


app = create_app()
