"""GET /health: is the process up; GET /ready: may it take traffic."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text
from starlette.responses import Response

from backend.api.deps import ServicesDep
from backend.api.errors import JSONError
from backend.observability.readiness import check_readiness

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(services: ServicesDep) -> dict[str, object]:
    """Liveness plus a database ping and the usage queue's depth."""
    database = "ok"
    try:
        async with services.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # reported, not raised: health must answer
        database = f"unavailable: {type(exc).__name__}"
    return {
        "status": "ok" if database == "ok" else "degraded",
        "database": database,
        "usage_queue_depth": services.recorder.depth,
        "usage_spool_records": services.recorder.spool_records,
        "specialists": len(services.specialists.enabled()),
        "rate_limit": services.rate_limits.snapshot(),
    }


@router.get("/ready", responses={503: {"description": "A check failed; the body names it"}})
async def ready(services: ServicesDep) -> Response:
    """200 when the database (or a small, healthy spool), Redis, the specialists and the
    identity provider's keys (AUTH_MODE=jwt) are fine."""
    settings = services.settings
    limiter = services.rate_limits.limiter
    readiness = await check_readiness(
        engine=services.engine, recorder=services.recorder,
        redis_ping=getattr(limiter, "ping", None) if services.rate_limits.backend == "redis"
        else None,
        specialists=len(services.specialists.enabled()),
        max_spool_records=settings.ready_max_spool_records,
        bound_seconds=settings.ready_timeout_seconds,
        auth=services.auth.ready(),
    )
    return JSONError(readiness.body(), status_code=200 if readiness.ready else 503)
