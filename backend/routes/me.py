"""GET /me: who the portal thinks the caller is, for front ends."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from backend.api.deps import IdentityDep, SettingsDep
from backend.api.openapi import error_responses
from backend.auth.policy import is_admin

router = APIRouter(tags=["identity"])


class Me(BaseModel):
    """The caller's identity as verified (never the token that proved it)."""

    user_id: str | None = Field(description="The user id claim; the owner's hash for an API key")
    email: str | None
    name: str | None = Field(default=None, description="The display name (OIDC `name` claim)")
    groups: list[str]
    is_admin: bool
    cost_center: str | None
    auth_method: str = Field(description="none | header | jwt | session | api_key")
    expires_at: float | None = Field(description="When the proof expires (epoch seconds)")


@router.get("/me", response_model=Me, responses=error_responses({
    401: "No valid token or key", 503: "The identity provider's keys cannot be had",
}))
async def me(identity: IdentityDep, settings: SettingsDep) -> Me:
    """The caller's user id, email, groups, admin flag and cost centre."""
    return Me(
        user_id=identity.user_id, email=identity.email, name=identity.name,
        groups=sorted(identity.groups),
        is_admin=is_admin(identity, settings.admin_groups) and identity.method != "none",
        cost_center=identity.cost_center, auth_method=identity.method,
        expires_at=identity.expires_at,
    )
