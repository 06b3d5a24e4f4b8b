"""The chat orchestration: specialist lookup, limits, the provider call, usage and cost.

Routes call `prepare` then `send` or `open_stream`; everything that can fail before the
first byte fails there, as an exception the error seam turns into a status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

import orjson

from backend.auth.errors import Forbidden
from backend.auth.identity import Identity
from backend.auth.policy import may_use
from backend.budgets.ledger import Hold, Ledger, Quote
from backend.chat.context import (
    ChatLimits,
    Outcome,
    PreparedChat,
    RequestContext,
    Trial,
)
from backend.chat.judge import judge
from backend.chat.pii import UNGUARDED, protect
from backend.chat.schemas import ChatRequest, ChatResponse
from backend.chat.stream import ChatStream, close_events, interrupted_kind, observe_end
from backend.config.pricing import PriceBook
from backend.errors import PortalError, RequestTooLarge
from backend.guard.policy import Guard
from backend.observability.metrics import NULL_METRICS, PortalMetrics
from backend.observability.outcomes import outcome_of_kind
from backend.observability.tracing import Tracing
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
from backend.resilience.runner import Answered, Call, Resilience
from backend.specialists.manager import SpecialistManager
from backend.specialists.types import Route
from backend.usage.record import UsageRecord
from backend.usage.recorder import UsageRecorder

log = logging.getLogger(__name__)

T = TypeVar("T")
# A stream whose first event has arrived: that event, and the iterator for the rest.
Opened = tuple[StreamEvent, AsyncIterator[StreamEvent]]


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
        metrics: PortalMetrics = NULL_METRICS,
        tracing: Tracing | None = None,
        guard: Guard | None = None,
        ledger: Ledger | None = None,
        default_max_output_tokens: int = 4096,
    ) -> None:
        self._specialists = specialists
        self._providers = providers
        self._prices = prices
        self._recorder = recorder
        self._limits = limits
        self._resilience = resilience or Resilience.off()
        self.metrics = metrics
        self.tracing = tracing
        self._guard = guard
        self._ledger = ledger
        # With budgets on, every call has an output bound: the one reserved is the one sent.
        self._default_max_output = default_max_output_tokens if ledger is not None else None

    def prepare(
        self, body: ChatRequest, *, context: RequestContext, trial: Trial | None = None
    ) -> PreparedChat:
        """Look up the specialist and provider and check limits; raise before any upstream call.

        With `trial`, its (not yet live) version answers instead, with no group check.
        """
        specialist = trial.specialist if trial else self._specialists.get(body.specialist_id)
        context.specialist_id = specialist_id = str(specialist.id)
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
            max_output_tokens=specialist.max_output_tokens or self._default_max_output,
        )
        fallbacks = trial.fallbacks if trial else self._specialists.fallbacks(specialist)
        if self._default_max_output is not None:
            fallbacks = tuple(
                replace(r, max_output_tokens=r.max_output_tokens or self._default_max_output)
                for r in fallbacks
            )
        pii = UNGUARDED
        if self._guard is not None:  # on every way in, before anything can go upstream
            request, pii = protect(self._guard, request, specialist.pii)
        return PreparedChat(
            context, specialist, specialist_id, provider, request, fallbacks, pii,
            trial=trial is not None,
        )

    async def send(self, chat: PreparedChat) -> ChatResponse:
        """Run a non-streaming call (with retries and fallbacks) and record it, however it ends."""
        outcome = self._outcome(chat)
        outcome.hold = await self._reserve(chat)  # a refusal here: nothing went upstream
        try:
            answered = await self._run(chat, _complete, outcome)
            completion: Completion = answered.value
            outcome.requested_model = answered.request.model
            outcome.model, outcome.usage = completion.model, completion.usage
            outcome.output_chars = len(completion.text)
            outcome.finish_reason = completion.finish_reason
            if outcome.text is not None:
                outcome.text.append(completion.text)
            judge(
                provider=outcome.provider, text=completion.text,
                finish_reason=completion.finish_reason, native=completion.native_finish,
                usage=completion.usage, max_output_tokens=answered.request.max_output_tokens,
            )
        except PortalError as exc:
            outcome.error, outcome.error_kind = exc, exc.code
            raise
        except BaseException as exc:  # cancelled (client gone) or a bug: still one record
            outcome.error_kind = interrupted_kind(exc)
            raise
        finally:
            record = self._record(chat, outcome, streamed=False)
        # Built from our own typed values, not validated a second time.
        return ChatResponse.model_construct(
            content=chat.pii.restore(completion.text),
            specialist_id=chat.specialist_id,
            specialist_name=chat.specialist.name,
            provider=record.provider,
            model=outcome.model,
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            estimated_cost_usd=record.estimated_cost_usd,
            latency_ms=record.latency_ms,
            request_id=chat.context.request_id,
            finish_reason=completion.finish_reason,
        )

    async def open_stream(self, chat: PreparedChat) -> ChatStream:
        """Start the stream and await its first event, so early failures still get a status.

        Retries and fallbacks happen here, while nothing has been sent to the client yet.
        """
        outcome = self._outcome(chat)
        outcome.hold = await self._reserve(chat)
        try:
            answered = await self._run(chat, self._first_event, outcome)
        except BaseException as exc:
            outcome.error = exc if isinstance(exc, PortalError) else None
            outcome.error_kind = (
                exc.code if isinstance(exc, PortalError) else interrupted_kind(exc)
            )
            self._record(chat, outcome, streamed=True)
            raise
        first, events = answered.value
        outcome.requested_model = answered.request.model
        if isinstance(first, StreamEnd):
            # An answer with no text at all: judged while the status is still ours to set.
            try:
                observe_end(outcome, first, answered.request)
            except BaseException as exc:
                outcome.error = exc if isinstance(exc, PortalError) else None
                outcome.error_kind = (
                    exc.code if isinstance(exc, PortalError) else interrupted_kind(exc)
                )
                await close_events(events)
                self._record(chat, outcome, streamed=True)
                raise
        return ChatStream(
            self, chat, first, events, outcome, breaker=answered.breaker,
            max_output_tokens=answered.request.max_output_tokens,
        )

    def _outcome(self, chat: PreparedChat) -> Outcome:
        outcome = Outcome(model=chat.request.model, provider=chat.provider.name)
        if self.tracing is not None:
            outcome.span = self.tracing.start_chat(
                model=chat.request.model, specialist_id=chat.specialist_id,
                specialist_version=chat.specialist.version, transport=chat.context.transport,
                request_id=chat.context.request_id,
                request=chat.request,
            )
            if self.tracing.capture_content:
                outcome.text = []
        return outcome

    def _run(self, chat: PreparedChat, call: Call[T], outcome: Outcome) -> Awaitable[Answered[T]]:
        if chat.pii.blocked:  # refused here, so the refusal is recorded like any failure
            outcome.usage = Usage(input_tokens=0, output_tokens=0)  # nothing went upstream
            raise chat.pii.refusal()
        run = self._resilience.run(
            chat.provider, chat.request, fallbacks=chat.fallbacks, resolve=self._resolve,
            call=call, tried=outcome,
        )
        if outcome.span is None or self.tracing is None:
            return run  # untraced: no extra frame on the request path
        return self.tracing.within(outcome.span, run)

    async def _reserve(self, chat: PreparedChat) -> Hold | None:
        if self._ledger is None:
            return None
        request = chat.request
        quotes = [Quote(chat.provider.name, request.model, request.max_output_tokens or 0)]
        quotes += [
            Quote(r.target.provider, r.model, r.max_output_tokens or 0) for r in chat.fallbacks
        ]
        return await self._ledger.reserve(
            identity=chat.context.identity, specialist_id=chat.specialist_id,
            request=request, quotes=quotes, note=chat.context.budget,
        )

    def _resolve(self, route: Route) -> Provider:
        return self._providers.get(route.target)

    async def _first_event(self, provider: Provider, request: CompletionRequest) -> Opened:
        """Open one upstream stream and wait, within the first-token bound, for its first event."""
        events = aiter(provider.stream(request))
        # Any first event counts: text, the end, or a sign of reasoning. A model that
        # reasons without a sign (o-series, Gemini 2.5) is not held to the first-token
        # bound: the stream-idle bound (per provider in PROVIDER_TIMEOUTS) waits for it.
        bound = None
        if not provider.thinks_silently(request.model):
            bound = self._resilience.first_token(provider.name)
        try:
            try:
                async with asyncio.timeout(bound):
                    return await anext(events), events
            except TimeoutError as exc:
                raise ProviderTimeout(
                    f"{provider.name} sent no text within {bound:g} s (nor any sign of reasoning)",
                    provider=provider.name,
                ) from exc
        except BaseException:
            await close_events(events)
            raise

    def _record(self, chat: PreparedChat, outcome: Outcome, *, streamed: bool) -> UsageRecord:
        usage, billed = _usage_of(outcome)
        usage = usage or _estimate(chat.request, outcome.output_chars)
        context = chat.context
        provider = outcome.provider or chat.provider.name
        cost = self._prices.estimate(provider, outcome.model, usage) if billed else 0.0
        record = UsageRecord(
            request_id=context.request_id,
            timestamp=datetime.now(UTC),
            user_email_hash=context.user_email_hash,
            specialist_id=chat.specialist_id,
            specialist_name=chat.specialist.name,
            provider=provider,
            model=outcome.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            estimated_cost_usd=cost,
            latency_ms=round((time.perf_counter() - context.received_at) * 1000, 3),
            success=outcome.error_kind is None,
            streamed=streamed,
            error_kind=outcome.error_kind,
            cached_input_tokens=usage.cached_input_tokens,
            tokens_estimated=not usage.reported,
            specialist_version=chat.specialist.version,
            prompt_hash=chat.specialist.prompt_hash,
            rate_limit_key_kind=context.rate_limit_key_kind,
            finish_reason=outcome.finish_reason,
            billed=billed,
            cost_center=context.identity.cost_center if context.identity else None,
            auth_method=context.identity.method if context.identity else None,
            pii_action=chat.pii.action,
            pii_counts=chat.pii.counts_json(),
            user_groups=_groups(context.identity),
            trial=chat.trial,
        )
        self._recorder.record(record)
        if chat.pii.action is not None:
            self.metrics.pii(chat.pii.action, chat.pii.counts)
        if self._ledger is not None:
            self._ledger.settle(outcome.hold, record.estimated_cost_usd)
        self._report(context, outcome, record)
        return record

    def _report(self, context: RequestContext, outcome: Outcome, record: UsageRecord) -> None:
        context.counted = True
        if outcome.span is not None and self.tracing is not None:
            self.tracing.end_chat(
                outcome.span, provider=record.provider, response_model=record.model,
                input_tokens=record.input_tokens, output_tokens=record.output_tokens,
                finish_reason=outcome.finish_reason,
                outcome=outcome_of_kind(outcome.error_kind, outcome.error),
                output="".join(outcome.text) if outcome.text is not None else None,
            )
        if self.metrics.enabled:
            self.metrics.chat_finished(
                context.transport, record.specialist_id, record.provider,
                outcome.requested_model or outcome.model,
                outcome=outcome_of_kind(outcome.error_kind, outcome.error),
                seconds=record.latency_ms / 1000, input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                cached_input_tokens=record.cached_input_tokens or 0,
                cost_usd=record.estimated_cost_usd,
            )


def _usage_of(outcome: Outcome) -> tuple[Usage | None, bool]:
    """The counts to record, and whether the provider billed the call.

    The provider's own counts win; then those it reported before a stream failed; a call
    it refused before generating anything is zero and unbilled; else None (estimate it).
    """
    if outcome.usage is not None:
        return outcome.usage, True
    error = outcome.error
    if isinstance(error, ProviderError):
        if error.usage is not None:
            return error.usage, True
        if error.billed is False:
            return Usage(input_tokens=0, output_tokens=0), False
    return None, True


async def _complete(provider: Provider, request: CompletionRequest) -> Completion:
    return await provider.complete(request)


def _groups(identity: Identity | None) -> str | None:
    if identity is None or not identity.groups:
        return None
    return orjson.dumps(sorted(identity.groups)).decode()


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
