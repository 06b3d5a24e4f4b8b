"""A chat stream after its first event: the rest of the events, observed, and the usage
record made when the stream ends, however it ends."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING

from backend.chat.context import Outcome, PreparedChat
from backend.chat.judge import judge
from backend.errors import PortalError
from backend.observability.metrics import PortalMetrics
from backend.providers.base import CompletionRequest, StreamEnd, StreamEvent, TextDelta
from backend.providers.errors import ProviderError
from backend.resilience.breaker import CircuitBreaker
from backend.usage.record import UsageRecord

if TYPE_CHECKING:
    from backend.chat.service import ChatService


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
        max_output_tokens: int | None = None,
    ) -> None:
        self.chat = chat
        self._max_output_tokens = max_output_tokens
        self._service = service
        self._first: StreamEvent | None = first
        self._rest = rest
        self.outcome = outcome
        self.record: UsageRecord | None = None
        self._breaker = breaker

    def events(self) -> AsyncGenerator[StreamEvent, None]:
        """Every event, the user's own values restored; recorded when the stream ends."""
        return self.chat.pii.restore_events(self._events())

    async def _events(self) -> AsyncGenerator[StreamEvent, None]:
        """Yield every event; record the interaction when the stream ends, however it ends."""
        outcome = self.outcome
        metrics = self._service.metrics
        metrics.stream_opened()
        try:
            if self._first is not None:
                first, self._first = self._first, None
                self._first_token(metrics)
                yield self._observe(first)
            async for event in self._rest:
                yield self._observe(event)
        except PortalError as exc:
            outcome.error, outcome.error_kind = exc, exc.code
            if self._breaker is not None and isinstance(exc, ProviderError) and exc.retryable:
                self._breaker.failed(probe=False)  # a stall or cut mid-stream counts too
            raise
        except BaseException as exc:
            outcome.error_kind = interrupted_kind(exc)
            raise
        finally:
            try:
                await close_events(self._rest)
            finally:
                # Even if a provider's clean-up raises, the interaction is still recorded.
                metrics.stream_closed()
                self.record = self._service._record(self.chat, outcome, streamed=True)

    def _first_token(self, metrics: PortalMetrics) -> None:
        if metrics.enabled:
            context, outcome = self.chat.context, self.outcome
            metrics.first_token(
                context.transport, self.chat.specialist_id, outcome.provider,
                outcome.requested_model or outcome.model,
                time.perf_counter() - context.received_at,
            )

    def _observe(self, event: StreamEvent) -> StreamEvent:
        if isinstance(event, TextDelta):
            self.outcome.output_chars += len(event.text)
            if self.outcome.text is not None:  # only while traces capture content
                self.outcome.text.append(event.text)
        elif isinstance(event, StreamEnd):
            # Text already streamed stays the answer; none at all is judged (an error event).
            observe_end(self.outcome, event, self.chat.request, self._max_output_tokens)
        return event


def observe_end(
    outcome: Outcome, end: StreamEnd, request: CompletionRequest,
    max_output_tokens: int | None = None,
) -> None:
    """Take a stream's end into the outcome; raise when it ended without any answer text."""
    outcome.model, outcome.usage, outcome.finish_reason = end.model, end.usage, end.finish_reason
    if outcome.output_chars == 0:
        judge(
            provider=outcome.provider, text="", finish_reason=end.finish_reason,
            native=end.native_finish, usage=end.usage,
            max_output_tokens=max_output_tokens or request.max_output_tokens,
        )


async def close_events(events: AsyncIterator[StreamEvent]) -> None:
    """Close a provider stream now: releases (mid-body, drops) its upstream connection."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


def interrupted_kind(exc: BaseException) -> str:
    """The usage record's error kind for an interaction ended by something not ours."""
    # CancelledError / GeneratorExit: the client went away or the server is shutting down.
    if isinstance(exc, (GeneratorExit,)) or type(exc).__name__ == "CancelledError":
        return "client_disconnected"
    return "internal_error"
