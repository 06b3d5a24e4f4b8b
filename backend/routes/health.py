"""GET /health: is the process up, and are its dependencies answering."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from backend.api.deps import ServicesDep

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
