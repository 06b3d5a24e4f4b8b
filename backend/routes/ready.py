"""GET /ready: can this worker serve signed-in requests now (the IdP's keys, if any)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse

from backend.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/ready", responses={503: {"description": "Not ready: the body names the check"}})
async def ready(services: ServicesDep) -> JSONResponse:
    """200 when ready; 503 while the identity provider's keys cannot be had."""
    ok, auth = services.auth.ready()
    return JSONResponse(
        {"status": "ready" if ok else "not_ready", "auth": auth, "auth_mode": services.auth.mode},
        status_code=200 if ok else 503,
    )
