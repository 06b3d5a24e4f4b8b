"""Personal API keys: POST/GET /keys, DELETE /keys/{id}; GET /admin/keys, DELETE /admin/keys/{id}.

The key itself is in POST's answer only; afterwards nobody (the database included) has it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.api.deps import AdminDep, IdentityDep, ServicesDep
from backend.api.openapi import error_responses
from backend.auth.apikeys import ApiKeyInfo, ApiKeyNotFound
from backend.auth.errors import Forbidden
from backend.auth.identity import Identity
from backend.auth.policy import may_mint_keys
from backend.database.audit_hook import AuditHook
from backend.governance.audit import Actor, AuditEvent, append

router = APIRouter(tags=["api-keys"])
# Listed in /openapi.json only while some admin can exist (require_admin answers 404 otherwise).
admin_router = APIRouter(tags=["api-keys"])

_SIGNED_IN = {
    400: "The body could not be parsed", 401: "No valid token or key",
    503: "The identity provider's keys cannot be had (auth_unavailable)",
}
_OWN = error_responses({**_SIGNED_IN, 403: "Keys are minted by a signed-in user, not a key "
                        "nor under AUTH_MODE=none", 404: "No such key (of the caller's)"})
_ADMIN = error_responses({
    **_SIGNED_IN, 403: "Signed in, but not in ADMIN_GROUPS",
    404: "No such key, or neither ADMIN_TOKEN nor ADMIN_GROUPS is set",
    429: "Too many failed admin authentications (Retry-After)",
})


class NewKey(BaseModel):
    """POST /keys's body."""

    name: str = Field(min_length=1, max_length=200)
    # "In the future" is a rule against the clock that JSON Schema cannot state: in words.
    expires_at: datetime | None = Field(
        default=None, description="ISO 8601, no zone meaning UTC; must be in the future (422)"
    )

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        if value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value


class KeyInfo(BaseModel):
    """A key as listed: never the key itself."""

    id: str
    prefix: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class OwnedKeyInfo(KeyInfo):
    """A key as an admin lists it: with its owner's hash."""

    owner_hash: str


class CreatedKey(KeyInfo):
    """POST /keys's answer: the only time the key is shown."""

    key: str


def _info(info: ApiKeyInfo) -> KeyInfo:
    return KeyInfo(**{k: getattr(info, k) for k in KeyInfo.model_fields})


@router.post("/keys", response_model=CreatedKey, status_code=201, responses=_OWN)
async def create_key(
    body: NewKey, identity: IdentityDep, services: ServicesDep, request: Request
) -> CreatedKey:
    """Mint a key acting as the caller, with the caller's groups as of now."""
    if not may_mint_keys(identity):
        raise Forbidden(
            "API keys are minted by a user signed in with a token or through a trusted front "
            "end, not by another key nor under AUTH_MODE=none"
        )
    info, key = await services.auth.api_keys.create(
        identity, name=body.name, expires_at=body.expires_at,
        audit=_audit(request, identity, "api_key.create"),
    )
    return CreatedKey(**_info(info).model_dump(), key=key)


@router.get("/keys", response_model=list[KeyInfo], responses=_OWN)
async def list_keys(identity: IdentityDep, services: ServicesDep) -> list[KeyInfo]:
    """The caller's keys, newest first."""
    if not identity.signed_in:
        return []
    return [_info(i) for i in await services.auth.api_keys.list(identity.user_hash)]


@router.delete("/keys/{key_id}", response_model=KeyInfo, responses=_OWN)
async def revoke_key(
    key_id: str, identity: IdentityDep, services: ServicesDep, request: Request
) -> KeyInfo:
    """Revoke one of the caller's keys (refused everywhere within seconds)."""
    if not identity.signed_in:
        raise ApiKeyNotFound("no such API key")
    return await _revoke(services, key_id, identity.user_hash, request, identity)


@admin_router.get("/admin/keys", response_model=list[OwnedKeyInfo], responses=_ADMIN)
async def list_all_keys(admin: AdminDep, services: ServicesDep) -> list[OwnedKeyInfo]:
    """Every key, for admins."""
    return [
        OwnedKeyInfo(**_info(i).model_dump(), owner_hash=i.owner_hash)
        for i in await services.auth.api_keys.list(None)
    ]


@admin_router.delete("/admin/keys/{key_id}", response_model=KeyInfo, responses=_ADMIN)
async def revoke_any_key(
    key_id: str, admin: AdminDep, services: ServicesDep, request: Request
) -> KeyInfo:
    """Revoke anyone's key, for admins."""
    return await _revoke(services, key_id, None, request, admin)


async def _revoke(
    services: ServicesDep, key_id: str, owner: str | None, request: Request, actor: Identity
) -> KeyInfo:
    hook = _audit(request, actor, "api_key.revoke")
    return _info(await services.auth.api_keys.revoke(key_id, owner, audit=hook))


def _audit(request: Request, actor: Identity, action: str) -> AuditHook:
    """The audit chain's entry for this key change, targeted at the key's id."""

    async def hook(
        conn: AsyncConnection, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
    ) -> object:
        target = f"api_key/{(after or before or {}).get('id')}"  # a new key's id is made inside
        request_id = getattr(request.state, "request_id", None)
        return await append(conn, AuditEvent(Actor.of(actor), action, target, before, after,
                                             request_id))

    return hook
