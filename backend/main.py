"""The FastAPI application: `create_app()` wires settings into services at start-up.

Run with `python -m uvicorn backend.main:app --port 8000`.
"""

from __future__ import annotations

import gc
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from pydantic_settings import SettingsError as SourceError

from backend.api import errors
from backend.api.context import RequestContextMiddleware
from backend.api.deps import Services
from backend.auth.apikeys import ApiKeys
from backend.auth.authenticator import build_authenticator
from backend.auth.startup import start_auth
from backend.chat.service import ChatLimits, ChatService
from backend.config.pricing import PriceBook
from backend.config.settings import Settings, get_settings
from backend.database.engine import make_engine
from backend.database.migrations import prepare_schema
from backend.frontdoor.body import BodyLimits
from backend.frontdoor.connections import ClientConnections
from backend.frontdoor.server import ServerHardening, ServerLimits
from backend.governance.startup import policy_of, start_governance
from backend.governance.versions import within_ceilings
from backend.openai_api.models import check_aliases
from backend.providers.factory import ProviderFactory
from backend.ratelimit.factory import build_rate_limits
from backend.resilience.runner import Resilience
from backend.routes import (
    admin_specialists,
    audit,
    chat,
    health,
    keys,
    me,
    openai_compat,
    ready,
    specialists,
    usage,
    ws,
)
from backend.specialists.manager import SpecialistManager
from backend.usage.identity import with_hash_key
from backend.usage.recorder import UsageRecorder

log = logging.getLogger("backend")


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
    resilience = Resilience.from_settings(settings)
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
    rate_limits = await build_rate_limits(settings, specialists)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300), raise_for_status=False
    )
    recorder = UsageRecorder.from_settings(settings, engine)
    recorder.start()
    providers = ProviderFactory(settings, session, os.environ)
    chat_service = ChatService(
        specialists=specialists,
        providers=providers,
        prices=PriceBook(settings.price_overrides),
        recorder=recorder,
        limits=ChatLimits(
            max_message_chars=settings.max_message_chars,
            max_history_messages=settings.max_history_messages,
            max_total_chars=settings.max_total_chars,
        ),
        resilience=resilience,
    )
    auth = build_authenticator(
        settings, session, ApiKeys(engine, settings.hash_secret())
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
        governance=governance,
        specialist_sync=specialist_sync,
    )


async def close_services(services: Services) -> None:
    """Drain usage records, then close connections, in that order."""
    if services.specialist_sync is not None:
        await services.specialist_sync.close()
    await services.recorder.close()
    await services.rate_limits.close()
    await services.session.close()
    await services.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application; tests pass their own settings."""
    settings = settings or load_settings()
    logging.basicConfig(level=settings.log_level.upper())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = await build_services(settings)
        app.state.settings = app.state.services.settings  # with the user-hash key resolved
        warm_up = start_auth(settings, app.state.services.auth)
        # Everything built so far lives as long as the process: move it out of the collector's
        # way, so the collections that requests trigger no longer walk the whole heap
        # (the price table, the ORM, the app) every time.
        gc.freeze()
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
    )
    # Read by SettingsDep. Not a dependency override: while any is set, FastAPI rebuilds
    # every dependency's signature analysis on every request (over 10 % of /chat/send's CPU).
    app.state.settings = settings
    # Innermost of the middleware: bodies are bounded before routing, and its refusals still
    # get CORS headers and a request id from the layers around it.
    app.add_middleware(
        BodyLimits,
        max_bytes=settings.request_byte_cap(),
        read_timeout=settings.body_read_timeout_seconds,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=[
            "X-Request-ID", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
            "Retry-After",
        ],
    )
    app.add_middleware(RequestContextMiddleware)
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
    app.include_router(openai_compat.router)
    app.include_router(me.router)
    app.include_router(keys.router)
    app.include_router(ready.router)
    return app


app = create_app()
