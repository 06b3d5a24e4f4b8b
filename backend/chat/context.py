"""The types one chat interaction carries through the service: its limits, who asked and
when, the prepared request, a trial version, and what the interaction produced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.auth.identity import Identity
from backend.budgets.ledger import BudgetNote, Hold
from backend.chat.pii import UNGUARDED, Protection
from backend.errors import PortalError
from backend.providers.base import CompletionRequest, FinishReason, Provider, Usage
from backend.specialists.types import Route, Specialist


@dataclass(frozen=True, slots=True)
class ChatLimits:
    """Request size limits; over them is a 413 and nothing goes upstream."""

    max_message_chars: int
    max_history_messages: int
    max_total_chars: int


@dataclass(slots=True)
class RequestContext:
    """Who asked, and when the request arrived (latency runs from here to the last byte)."""

    request_id: str
    received_at: float  # time.perf_counter() at receipt
    user_email_hash: str | None = None
    rate_limit_key_kind: str | None = None
    # Resolved once at the edge; None only where a caller has no identity (unit tests).
    identity: Identity | None = None
    transport: str = "send"  # send | stream | ws | v1: the metrics' transport label
    counted: bool = False  # set once the metrics hold this request, so no edge counts it again
    specialist_id: str | None = None  # once looked up: what a later refusal is counted under
    # Filled in by the budget reservation; the response's X-Budget-Remaining-USD.
    budget: BudgetNote | None = None


# Not frozen, though never changed: built per request (see providers/base.py Usage).
@dataclass(slots=True)
class PreparedChat:
    """A validated request, bound to its specialist and provider, ready to run.

    `provider` and `request` are the specialist's own; `fallbacks` are tried after them.
    Which one answered is on the outcome and the usage record, never assumed from these.
    """

    context: RequestContext
    specialist: Specialist
    specialist_id: str  # str(specialist.id), made once: a request reads it half a dozen times
    provider: Provider
    request: CompletionRequest
    fallbacks: tuple[Route, ...] = ()
    pii: Protection = UNGUARDED  # what the PII guard did to `request`
    trial: bool = False  # a governance trial: its usage row says so


@dataclass(frozen=True, slots=True)
class Trial:
    """A version an admin tries before it is live: its specialist and resolved fallbacks."""

    specialist: Specialist
    fallbacks: tuple[Route, ...] = ()


@dataclass(slots=True)
class Outcome:
    """What one interaction produced, for its usage record and final event."""

    model: str
    usage: Usage | None = None
    output_chars: int = 0
    error: PortalError | None = None
    error_kind: str | None = None
    provider: str = ""  # the provider tried last: the one that answered, on success
    finish_reason: FinishReason | None = None
    requested_model: str | None = None  # the configured model that answered (a metric label)
    span: Any = None  # the interaction's trace span, when tracing is on
    text: list[str] | None = None  # the answer, kept only when traces capture content
    hold: Hold | None = None  # the budget reservation, settled with the usage record


