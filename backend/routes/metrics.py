"""GET /metrics: the Prometheus text format, all workers summed under multiprocess mode."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from backend.api.deps import ServicesDep, require_metrics_token
from backend.api.openapi import error_responses

router = APIRouter(tags=["health"])


async def _enabled(services: ServicesDep) -> None:
    # First of the route's dependencies: while METRICS_ENABLED is false the route is absent
    # (404, and not in /openapi.json), whatever token is sent.
    if not services.metrics.enabled:
        raise StarletteHTTPException(404, "Not Found")


@router.get(
    "/metrics", dependencies=[Depends(_enabled), Depends(require_metrics_token)],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}},
              "description": "Prometheus text exposition format"},
        **error_responses({401: "METRICS_TOKEN is set and was not sent",
                           404: "METRICS_ENABLED is false",
                           429: "Too many failed authentications (Retry-After)"}),
    },
)
async def metrics(services: ServicesDep) -> Response:
    """Every instrument, for a Prometheus scrape (404 while METRICS_ENABLED is false)."""
    body, content_type = services.metrics.render()
    return Response(body, media_type=content_type)
