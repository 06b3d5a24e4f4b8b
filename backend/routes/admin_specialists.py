"""/admin/specialists: the governed lifecycle of specialists (admins only).

Thin handlers over `backend.governance`: propose, approve or reject (four eyes), enable or
disable, try a version, read the history. Every change is in the audit chain.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import AdminDep, ServicesDep, require_admin
from backend.api.openapi import error_responses
from backend.chat.context import RequestContext
from backend.chat.schemas import ChatRequest, ChatResponse, ErrorBody, HistoryMessage
from backend.governance.audit import Actor
from backend.governance.errors import SpecialistsReadOnly
from backend.governance.service import Change, Governance
from backend.governance.trial import try_version

router = APIRouter(
    prefix="/admin/specialists", tags=["admin"], dependencies=[Depends(require_admin)]
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body could not be parsed"},
    401: {"model": ErrorBody, "description": "No admin credentials"},
    403: {"model": ErrorBody, "description": "Not an admin, or approving one's own version"},
    404: {"model": ErrorBody, "description": "No such specialist or version"},
    409: {"model": ErrorBody, "description": "Not a proposed version; SPECIALISTS_SOURCE=file"},
    422: {"model": ErrorBody, "description": "An invalid version (its fields at fault: `detail`)"},
    429: {"model": ErrorBody, "description": "Too many failed admin authentications"},
    503: {"model": ErrorBody, "description": "The database is unreachable"},
}
SpecialistId = Annotated[UUID, Path(description="The specialist's id")]
Number = Annotated[int, Path(ge=1, le=1_000_000, description="The version number")]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]
_EXAMPLE: dict[str, Any] = {
    "name": "Policy Reasoner", "provider": "openai", "model": "o4-mini",
    "system_prompt": "You answer questions about internal finance policies.",
    "classification": "internal", "reason": "new policy desk",
}


class CreateBody(BaseModel):
    """A whole version (the specialist's fields, as in the file) and why."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [dict(_EXAMPLE)]})

    id: UUID | None = Field(default=None, description="Chosen id; default: a new UUID")
    reason: Reason


class ProposeBody(BaseModel):
    """The fields that change (or a whole version), why, and optionally the version to start
    from (a rollback: `{"from_version": 2, "reason": "..."}`)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"system_prompt": "You are a careful financial analyst.", "reason": "tone"},
        {"from_version": 1, "reason": "roll back"},
    ]})

    reason: Reason
    from_version: int | None = Field(default=None, ge=1)


class DecisionBody(BaseModel):
    """An approval's or rejection's comment (required to reject)."""

    model_config = ConfigDict(extra="forbid")

    comment: Annotated[str, Field(max_length=2000)] = ""


class RejectBody(DecisionBody):
    """A rejection says why."""

    comment: Annotated[str, Field(min_length=1, max_length=2000)]


class TryBody(BaseModel):
    """One test message (with optional history) for a version that is not live."""

    model_config = ConfigDict(extra="forbid")

    message: Annotated[str, Field(min_length=1)]
    conversation_history: list[HistoryMessage] = Field(default_factory=list)


def _governance(services: ServicesDep) -> Governance:
    if services.governance is None:
        raise SpecialistsReadOnly("SPECIALISTS_SOURCE=file: specialists come from the file")
    return services.governance


GovernanceDep = Annotated[Governance, Depends(_governance)]


def _change(request: Request, admin: AdminDep) -> Change:
    return Change(Actor.of(admin), getattr(request.state, "request_id", None))


ChangeDep = Annotated[Change, Depends(_change)]


@router.get("", responses=_ERRORS)
async def list_specialists(governance: GovernanceDep) -> list[dict[str, Any]]:
    """Every specialist with its live version and any pending proposals."""
    return await governance.overview()


@router.post("", status_code=201, responses=_ERRORS)
async def create_specialist(
    body: CreateBody, governance: GovernanceDep, change: ChangeDep
) -> dict[str, Any]:
    """Create a specialist; the answer carries its id and version 1 (`proposed`, or `live`
    when SPECIALIST_APPROVAL=none)."""
    return await governance.create(
        body.model_extra or {}, reason=body.reason, change=change,
        specialist_id=str(body.id) if body.id else None,
    )


@router.post("/{specialist_id}/versions", status_code=201, responses=_ERRORS)
async def propose_version(
    specialist_id: SpecialistId, body: ProposeBody, governance: GovernanceDep, change: ChangeDep
) -> dict[str, Any]:
    """Propose a new version: the changed fields over the live one (or over `from_version`)."""
    return await governance.propose(
        str(specialist_id), body.model_extra or {}, reason=body.reason, change=change,
        from_version=body.from_version,
    )


@router.get("/{specialist_id}/versions", responses=_ERRORS)
async def version_history(
    specialist_id: SpecialistId, governance: GovernanceDep
) -> list[dict[str, Any]]:
    """Every version: author, approver, reason, times, and the diff to the one before."""
    return await governance.history(str(specialist_id))


@router.post("/{specialist_id}/versions/{number}/approve", responses=_ERRORS)
async def approve_version(
    specialist_id: SpecialistId, number: Number, governance: GovernanceDep, change: ChangeDep,
    body: DecisionBody | None = None,
) -> dict[str, Any]:
    """Make a proposed version live (another admin than its author, under four eyes)."""
    return await governance.decide(
        str(specialist_id), number, approve=True, comment=body.comment if body else "",
        change=change,
    )


@router.post("/{specialist_id}/versions/{number}/reject", responses=_ERRORS)
async def reject_version(
    specialist_id: SpecialistId, number: Number, body: RejectBody, governance: GovernanceDep,
    change: ChangeDep,
) -> dict[str, Any]:
    """Reject a proposed version, with a comment."""
    return await governance.decide(
        str(specialist_id), number, approve=False, comment=body.comment, change=change
    )


@router.post("/{specialist_id}/disable", responses=_ERRORS)
async def disable_specialist(
    specialist_id: SpecialistId, governance: GovernanceDep, change: ChangeDep
) -> dict[str, Any]:
    """Stop serving a specialist on every worker (its versions are kept)."""
    return await governance.set_enabled(str(specialist_id), False, change=change)


@router.post("/{specialist_id}/enable", responses=_ERRORS)
async def enable_specialist(
    specialist_id: SpecialistId, governance: GovernanceDep, change: ChangeDep
) -> dict[str, Any]:
    """Serve a disabled specialist again (its live version)."""
    return await governance.set_enabled(str(specialist_id), True, change=change)


@router.post("/{specialist_id}/versions/{number}/try", responses={
    **_ERRORS, **error_responses({
        400: "The body could not be parsed",
        413: "The message or history is over its limit",
        429: "Rate limited, or too many failed admin authentications",
        502: "The provider failed or rejected the call",
        503: "The provider is not configured, unavailable or rate limited",
        504: "The provider timed out",
    }),
})
async def try_a_version(
    request: Request, specialist_id: SpecialistId, number: Number, body: TryBody,
    services: ServicesDep, governance: GovernanceDep, change: ChangeDep, admin: AdminDep,
) -> ChatResponse:
    """Send one message through a version without making it live; recorded as a trial."""
    context = RequestContext(
        request_id=change.request_id or "", received_at=getattr(
            request.state, "received_at", time.perf_counter()),
        user_email_hash=admin.user_hash, identity=admin,
    )
    chat = ChatRequest(
        specialist_id=str(specialist_id), message=body.message,
        conversation_history=body.conversation_history,
    )
    return await try_version(
        governance, services.chat, str(specialist_id), number, body=chat, context=context,
        change=change,
    )
