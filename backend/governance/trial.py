"""Trying a version before it is live: one message through it, recorded as a trial."""

from __future__ import annotations

from backend.chat.context import RequestContext, Trial
from backend.chat.schemas import ChatRequest, ChatResponse
from backend.chat.service import ChatService
from backend.errors import PortalError
from backend.governance.service import Change, Governance


async def try_version(
    governance: Governance, chat: ChatService, specialist_id: str, number: int, *,
    body: ChatRequest, context: RequestContext, change: Change,
) -> ChatResponse:
    """Answer `body` with version `number` (any state); its usage row is flagged `trial`,
    and the audit chain records who tried what and whether it answered."""
    specialist, candidate = await governance.candidate(specialist_id, number)
    prepared = chat.prepare(
        body, context=context, trial=Trial(specialist, candidate.fallbacks(specialist))
    )
    error: str | None = "internal_error"
    try:
        response = await chat.send(prepared)
        error = None
        return response
    except PortalError as exc:
        error = exc.code
        raise
    finally:
        await governance.record_trial(
            specialist_id, number, change=change, ok=error is None, error=error
        )
