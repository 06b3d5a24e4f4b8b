"""The chat orchestration: specialist lookup, limits, the provider call, usage and cost.

Routes call `prepare` then `send` or `open_stream`; everything that can fail before the
first byte fails there, as an exception the error seam turns into a status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from backend.auth.errors import Forbidden
from backend.auth.identity import Identity
from backend.auth.policy import may_use
from backend.chat.schemas import ChatRequest, ChatResponse
from backend.config.pricing import PriceBook
from backend.errors import PortalError, RequestTooLarge
from backend.providers.base import (
    Completion,
    CompletionRequest,
    Message,
    Provider,
    StreamEnd,
    StreamEvent,
    Usage,
)
from backend.providers.errors import ProviderError, ProviderTimeout
from backend.providers.factory import ProviderFactory
from backend.resilience.breaker import CircuitBreaker
from backend.resilience.runner import Answered, Call, Resilience
from backend.specialists.manager import SpecialistManager
from backend.specialists.types import Route, Specialist
from backend.usage.record import UsageRecord
from backend.usage.recorder import UsageRecorder

log = logging.getLogger(__name__)

T = TypeVar("T")
# A stream whose first event has arrived: that event, and the iterator for the rest.
Opened = tuple[StreamEvent, AsyncIterator[StreamEvent]]


@dataclass(frozen=True, slots=True)
class ChatLimits:
    """Request size limits; over them is a 413 and nothing goes upstream."""

    max_message_chars: int
    max_history_messages: int
    max_total_chars: int


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who asked, and when the request arrived (latency runs from here to the last byte)."""

    request_id: str
    received_at: float  # time.perf_counter() at receipt
    user_email_hash: str | None = None
    rate_limit_key_kind: str | None = None
    # Resolved once at the edge; None only where a caller has no identity (unit tests).
    identity: Identity | None = None


@dataclass(frozen=True, slots=True)
class PreparedChat:
    """A validated request, bound to its specialist and provider, ready to run.

    `provider` and `request` are the specialist's own; `fallbacks` are tried after them.
    Which one answered is on the outcome and the usage record, never assumed from these.
    """

    context: RequestContext
    specialist: Specialist
    provider: Provider
    request: CompletionRequest
    fallbacks: tuple[Route, ...] = ()
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


class ChatService:
    """Runs chat interactions and records each one exactly once."""

    def __init__(
        self,
        *,
        specialists: SpecialistManager,
        providers: ProviderFactory,
        prices: PriceBook,
        recorder: UsageRecorder,
        limits: ChatLimits,
        resilience: Resilience | None = None,
    ) -> None:
        self._specialists = specialists
        self._providers = providers
        self._prices = prices
        self._recorder = recorder
        self._limits = limits
        self._resilience = resilience or Resilience.off()

    def prepare(
        self, body: ChatRequest, *, context: RequestContext, trial: Trial | None = None
    ) -> PreparedChat:
        """Look up the specialist and provider and check limits; raise before any upstream call.

        With `trial`, its (not yet live) version answers instead, with no group check.
        """
        specialist = trial.specialist if trial else self._specialists.get(body.specialist_id)
        identity = context.identity
        if trial is None and identity is not None and not may_use(identity, specialist):
            raise Forbidden("this specialist is restricted to some groups, not yours")
        _check_limits(body, self._limits)
        provider = self._providers.get(specialist.target)
        messages = tuple(Message(m.role, m.content) for m in body.conversation_history)
        request = CompletionRequest(
            model=specialist.model,
            messages=(*messages, Message("user", body.message)),
            system=specialist.system_prompt or None,
            temperature=specialist.temperature,
            max_output_tokens=specialist.max_output_tokens,
        )
        fallbacks = trial.fallbacks if trial else self._specialists.fallbacks(specialist)
        return PreparedChat(
            context, specialist, provider, request, fallbacks, trial=trial is not None
        )

    async def send(self, chat: PreparedChat) -> ChatResponse:
        """Run a non-streaming call (with retries and fallbacks) and record it, however it ends."""
        outcome = Outcome(model=chat.request.model, provider=chat.provider.name)
        try:
            answered = await self._run(chat, _complete, outcome)
            completion: Completion = answered.value
            outcome.model, outcome.usage = completion.model, completion.usage
            outcome.output_chars = len(completion.text)
        except PortalError as exc:
            outcome.error, outcome.error_kind = exc, exc.code
            raise
        except BaseException as exc:  # cancelled (client gone) or a bug: still one record
            outcome.error_kind = _interrupted_kind(exc)
            raise
        finally:
            record = self._record(chat, outcome, streamed=False)
        return ChatResponse(
            content=completion.text,
            specialist_id=str(chat.specialist.id),
            specialist_name=chat.specialist.name,
            provider=record.provider,
            model=outcome.model,
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            estimated_cost_usd=record.estimated_cost_usd,
            latency_ms=record.latency_ms,
            request_id=chat.context.request_id,
        )

    async def open_stream(self, chat: PreparedChat) -> ChatStream:
        """Start the stream and await its first event, so early failures still get a status.

        Retries and fallbacks happen here, while nothing has been sent to the client yet.
        """
        outcome = Outcome(model=chat.request.model, provider=chat.provider.name)
        try:
            answered = await self._run(chat, self._first_event, outcome)
        except BaseException as exc:
            outcome.error = exc if isinstance(exc, PortalError) else None
            outcome.error_kind = (
                exc.code if isinstance(exc, PortalError) else _interrupted_kind(exc)
            )
            self._record(chat, outcome, streamed=True)
            raise
        first, events = answered.value
        return ChatStream(self, chat, first, events, outcome, breaker=answered.breaker)

    def _run(self, chat: PreparedChat, call: Call[T], outcome: Outcome) -> Awaitable[Answered[T]]:
        return self._resilience.run(
            chat.provider, chat.request, fallbacks=chat.fallbacks, resolve=self._resolve,
            call=call, tried=outcome,
        )

    def _resolve(self, route: Route) -> Provider:
        return self._providers.get(route.target)

    async def _first_event(self, provider: Provider, request: CompletionRequest) -> Opened:
        """Open one upstream stream and wait, within the first-token bound, for its first event."""
        events = aiter(provider.stream(request))
        bound = self._resilience.first_token(provider.name)
        try:
            try:
                async with asyncio.timeout(bound):
                    return await anext(events), events
            except TimeoutError as exc:
                raise ProviderTimeout(
                    f"{provider.name} sent no text within {bound:g} s", provider=provider.name
                ) from exc
        except BaseException:
            await close_events(events)
            raise

    def _record(self, chat: PreparedChat, outcome: Outcome, *, streamed: bool) -> UsageRecord:
        usage = outcome.usage or _estimate(chat.request, outcome.output_chars)
        context = chat.context
        provider = outcome.provider or chat.provider.name
        record = UsageRecord(
            request_id=context.request_id,
            timestamp=datetime.now(UTC),
            user_email_hash=context.user_email_hash,
            specialist_id=str(chat.specialist.id),
            specialist_name=chat.specialist.name,
            provider=provider,
            model=outcome.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            estimated_cost_usd=self._prices.estimate(provider, outcome.model, usage),
            latency_ms=round((time.perf_counter() - context.received_at) * 1000, 3),
            success=outcome.error_kind is None,
            streamed=streamed,
            error_kind=outcome.error_kind,
            cached_input_tokens=usage.cached_input_tokens,
            tokens_estimated=not usage.reported,
            specialist_version=chat.specialist.version,
            prompt_hash=chat.specialist.prompt_hash,
            rate_limit_key_kind=context.rate_limit_key_kind,
            cost_center=context.identity.cost_center if context.identity else None,
            auth_method=context.identity.method if context.identity else None,
            trial=chat.trial,
        )
        self._recorder.record(record)
        return record


class ChatStream:
    """An upstream stream whose first event has arrived; iterate it for the rest."""

    def __init__(
        self,
        service: ChatService,
        chat: PreparedChat,
        first: StreamEvent,
        rest: AsyncIterator[StreamEvent],
        outcome: Outcome,
        *,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.chat = chat
        self._service = service
        self._first: StreamEvent | None = first
        self._rest = rest
        self.outcome = outcome
        self.record: UsageRecord | None = None
        self._breaker = breaker

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Yield every event; record the interaction when the stream ends, however it ends."""
        outcome = self.outcome
        try:
            if self._first is not None:
                first, self._first = self._first, None
                yield self._observe(first)
            async for event in self._rest:
                yield self._observe(event)
        except PortalError as exc:
            outcome.error, outcome.error_kind = exc, exc.code
            if self._breaker is not None and isinstance(exc, ProviderError) and exc.retryable:
                self._breaker.failed(probe=False)  # a stall or cut mid-stream counts too
            raise
        except BaseException as exc:
            outcome.error_kind = _interrupted_kind(exc)
            raise
        finally:
            try:
                await close_events(self._rest)
            finally:
                # Even if a provider's clean-up raises, the interaction is still recorded.
                self.record = self._service._record(self.chat, outcome, streamed=True)

    def _observe(self, event: StreamEvent) -> StreamEvent:
        if isinstance(event, StreamEnd):
            self.outcome.model, self.outcome.usage = event.model, event.usage
        else:
            self.outcome.output_chars += len(event.text)
        return event


async def _complete(provider: Provider, request: CompletionRequest) -> Completion:
    return await provider.complete(request)


async def close_events(events: AsyncIterator[StreamEvent]) -> None:
    """Close a provider stream now: releases (mid-body, drops) its upstream connection."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


def _interrupted_kind(exc: BaseException) -> str:
    # CancelledError / GeneratorExit: the client went away or the server is shutting down.
    if isinstance(exc, (GeneratorExit,)) or type(exc).__name__ == "CancelledError":
        return "client_disconnected"
    return "internal_error"


def _check_limits(body: ChatRequest, limits: ChatLimits) -> None:
    if len(body.message) > limits.max_message_chars:
        raise RequestTooLarge(f"message is over {limits.max_message_chars} characters")
    if len(body.conversation_history) > limits.max_history_messages:
        raise RequestTooLarge(
            f"conversation_history has more than {limits.max_history_messages} messages"
        )
    total = len(body.message)
    for turn in body.conversation_history:
        if len(turn.content) > limits.max_message_chars:
            raise RequestTooLarge(
                f"a history message is over {limits.max_message_chars} characters"
            )
        total += len(turn.content)
    if total > limits.max_total_chars:
        raise RequestTooLarge(f"the conversation is over {limits.max_total_chars} characters")


def _estimate(request: CompletionRequest, output_chars: int) -> Usage:
    # When a provider reported nothing (a disconnect before its usage, or a server that never
    # reports it): about four characters a token, flagged as estimated, never passed off as real.
    prompt_chars = len(request.system or "") + sum(len(m.content) for m in request.messages)
    return Usage(
        input_tokens=(prompt_chars + 3) // 4, output_tokens=(output_chars + 3) // 4, reported=False
    )
