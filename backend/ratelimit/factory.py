"""Build the rate limits from settings: the backend, the policy, the proxy trust."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from backend.config.settings import Settings
from backend.ratelimit.base import RateLimiter
from backend.ratelimit.failures import FailureThrottle
from backend.ratelimit.gate import RateLimits
from backend.ratelimit.keys import parse_networks
from backend.ratelimit.memory import MemoryRateLimiter
from backend.ratelimit.policy import Limit, LimitOverride, RatePolicy, build_policy
from backend.ratelimit.redis import RedisRateLimiter
from backend.specialists.manager import SpecialistManager
from backend.usage.identity import hash_email

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def backend_name(settings: Settings) -> str:
    """`memory` or `redis`: RATE_LIMIT_BACKEND when set, else redis exactly when REDIS_URL is."""
    if settings.rate_limit_backend:
        return settings.rate_limit_backend
    return "redis" if settings.redis_url else "memory"


async def build_rate_limits(settings: Settings, specialists: SpecialistManager) -> RateLimits:
    """The limiter chosen by settings, with its policy; Redis gets its script loaded."""
    name = backend_name(settings)
    limiter: RateLimiter
    if name == "redis":
        redis_limiter = RedisRateLimiter(
            settings.redis_url or DEFAULT_REDIS_URL,
            prefix=settings.rate_limit_redis_prefix,
            timeout=settings.rate_limit_redis_timeout_seconds,
        )
        await redis_limiter.start()
        limiter = redis_limiter
    else:
        limiter = MemoryRateLimiter()
    return RateLimits(
        limiter,
        policy_from_settings(settings, specialists),
        trusted_proxies=parse_networks(settings.trusted_proxies),
        fail_open=settings.rate_limit_fail_open,
        backend=name,
        ipv6_prefix=settings.rate_limit_ipv6_prefix,
        admin_failures=FailureThrottle(
            settings.admin_auth_max_failures, settings.admin_auth_window_seconds
        ),
    )


def policy_from_settings(settings: Settings, specialists: SpecialistManager) -> RatePolicy:
    """Default limits per kind, named users (hashed here, at start-up) and specialists.

    A specialist's limit comes from RATE_LIMIT_SPECIALISTS if it is named there, else from
    its `rate_limit` in the specialists file.
    """
    ip = Limit(settings.rate_limit_requests, settings.rate_limit_window_seconds)
    user = Limit(
        settings.rate_limit_user_requests or ip.capacity,
        settings.rate_limit_user_window_seconds or ip.window_seconds,
    )
    secret = settings.hash_secret()
    # Emails are hashed with the same keyed hash as the user header, and never logged.
    users = {hash_email(secret, email): o for email, o in settings.rate_limit_users.items()}
    return build_policy(
        ip=ip, user=user, user_overrides=users,
        specialist_overrides=_specialist_overrides(settings, specialists),
    )


def _specialist_overrides(
    settings: Settings, specialists: SpecialistManager
) -> Mapping[str, LimitOverride]:
    overrides = {str(s.id): s.rate_limit for s in specialists.enabled() if s.rate_limit}
    enabled = {str(s.id) for s in specialists.enabled()}
    for specialist_id, override in settings.rate_limit_specialists.items():
        key = str(specialist_id)
        if key not in enabled:
            log.warning("RATE_LIMIT_SPECIALISTS names %s, which is not an enabled specialist", key)
        overrides[key] = override
    return overrides
