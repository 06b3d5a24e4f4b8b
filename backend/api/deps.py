"""FastAPI dependencies, as Annotated aliases routes can declare."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import aiohttp
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.chat.service import ChatService, RequestContext
from backend.config.settings import Settings, get_settings
from backend.providers.factory import ProviderFactory
from backend.ratelimit.base import RateDecision, RateLimiter, RateLimitExceeded
from backend.ratelimit.keys import Network, client_ip
from backend.ratelimit.policy import RatePolicy
from backend.specialists.manager import SpecialistManager
from backend.usage.identity import hash_email
from backend.usage.recorder import UsageRecorder


@dataclass(frozen=True, slots=True)
class Services:
    """Everything built at start-up and shared by requests; lives on `app.state.services`."""

    settings: Settings
    session: aiohttp.ClientSession
    engine: AsyncEngine
    specialists: SpecialistManager
    providers: ProviderFactory
    recorder: UsageRecorder
    limiter: RateLimiter
    policy: RatePolicy
    trusted_proxies: tuple[Network, ...]
    chat: ChatService


def get_services(request: Request) -> Services:
    """The app's services (built by the lifespan)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def user_email_hash(request: Request, services: Services) -> str | None:
    """The keyed hash of the user header's email, or None when the front end sent none."""
    email = request.headers.get(services.settings.user_email_header)
    if not email or not email.strip():
        return None
    return hash_email(services.settings.hash_secret(), email)


async def enforce_rate_limit(request: Request, services: ServicesDep) -> RateDecision:
    """Take a token for this request, before its body is even validated; 429 when refused.

    The decision is kept on the request so every response, errors included, carries it.
    """
    peer = request.client.host if request.client else None
    ip = client_ip(peer, request.headers.getlist("x-forwarded-for"), services.trusted_proxies)
    user = user_email_hash(request, services)
    request.state.user_email_hash = user
    decision = await services.limiter.acquire(services.policy.buckets(ip=ip, user=user))
    request.state.rate_limit = decision
    if not decision.allowed:
        raise RateLimitExceeded(decision)
    return decision


RateLimitDep = Annotated[RateDecision, Depends(enforce_rate_limit)]


def chat_context(request: Request, decision: RateLimitDep) -> RequestContext:
    """The request's id, receipt time and identity, for the chat service."""
    return RequestContext(
        request_id=request.state.request_id,
        received_at=request.state.received_at,
        user_email_hash=request.state.user_email_hash,
        rate_limit_key_kind=decision.key_kind,
    )


ChatContextDep = Annotated[RequestContext, Depends(chat_context)]
