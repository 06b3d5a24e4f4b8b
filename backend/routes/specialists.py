"""GET /specialists: what front ends show in their picker."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from backend.api.deps import IdentityDep, ServicesDep
from backend.auth.policy import may_use

router = APIRouter(tags=["specialists"])


class SpecialistInfo(BaseModel):
    """One enabled specialist, as a front end sees it (no prompts, no keys)."""

    id: str
    name: str
    description: str
    provider: str
    model: str
    configured: bool


@router.get("/specialists", response_model=list[SpecialistInfo])
async def list_specialists(services: ServicesDep, identity: IdentityDep) -> list[SpecialistInfo]:
    """Enabled specialists the caller may use, and whether each one's provider has its key."""
    return [
        SpecialistInfo(
            id=str(s.id), name=s.name, description=s.description, provider=s.provider,
            model=s.model, configured=services.providers.is_configured(s.target),
        )
        for s in services.specialists.enabled()
        if may_use(identity, s)
    ]
