"""The PII guard on the chat path: masks the request on its way in, restores the answer
on its way out (whole, or streamed without holding it back), and fails closed.

The chat service calls `protect` once in `prepare`, and wraps its answer with the
`Protection` it got back; nothing else on the chat path knows about the guard.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import orjson

from backend.errors import PortalError
from backend.guard.errors import GuardFailed, PiiDetected
from backend.guard.kinds import PiiType
from backend.guard.mask import EXPLANATION, StreamRestorer, restore
from backend.guard.policy import Guard, PiiPolicy
from backend.providers.base import CompletionRequest, Message, StreamEvent, TextDelta

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Protection:
    """What the guard did to one request, and how to give the user their values back."""

    action: Literal["masked", "blocked"] | None = None
    counts: Mapping[PiiType, int] = field(default_factory=dict)
    # Placeholder -> the user's value; empty unless the answer is to be restored.
    originals: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def blocked(self) -> bool:
        """Whether the request must be refused (nothing may go upstream)."""
        return self.action == "blocked"

    def refusal(self) -> PiiDetected:
        """The error a blocked request gets: the kinds found, never the values."""
        return PiiDetected(sorted(self.counts))

    def counts_json(self) -> str | None:
        """The counts as the usage row stores them (`{"card": 1, "iban": 2}`), or None."""
        if not self.counts:
            return None
        return orjson.dumps(dict(sorted(self.counts.items()))).decode()

    def restore(self, text: str) -> str:
        """A whole answer with the user's values back in place of their placeholders."""
        return restore(text, self.originals) if self.originals else text

    def restore_events(
        self, events: AsyncGenerator[StreamEvent, None]
    ) -> AsyncGenerator[StreamEvent, None]:
        """The stream with values restored as it goes (the stream itself when none are)."""
        return _restored(events, self.originals) if self.originals else events


UNGUARDED = Protection()


def protect(
    guard: Guard, request: CompletionRequest, policy: PiiPolicy | None
) -> tuple[CompletionRequest, Protection]:
    """The request as it may leave, and what was done to it. Fails closed: a guard that
    raises refuses the request (`GuardFailed`), it never lets it through unguarded."""
    try:
        return _protect(guard, request, guard.policy(policy))
    except PortalError:
        raise
    except Exception as exc:
        # The type only: an exception's message might quote the text it choked on.
        log.error("the PII guard failed (%s); the request was refused", type(exc).__name__)
        raise GuardFailed("the PII guard could not check this request; it was not sent") from exc


def _protect(
    guard: Guard, request: CompletionRequest, policy: PiiPolicy
) -> tuple[CompletionRequest, Protection]:
    if policy.mode == "off":
        return request, UNGUARDED
    scan = guard.scan([m.content for m in request.messages], policy)
    if not scan.found:
        return request, UNGUARDED
    if scan.mode == "block":
        return request, Protection("blocked", scan.counts)
    messages = tuple(
        m if m.content == text else Message(m.role, text)
        for m, text in zip(request.messages, scan.texts, strict=True)
    )
    system = f"{request.system}\n\n{EXPLANATION}" if request.system else EXPLANATION
    masked = replace(request, messages=messages, system=system)
    return masked, Protection("masked", scan.counts, scan.originals if policy.restore else {})


async def _restored(
    events: AsyncGenerator[StreamEvent, None], originals: Mapping[str, str]
) -> AsyncGenerator[StreamEvent, None]:
    restorer = StreamRestorer(originals)
    try:
        async for event in events:
            if not isinstance(event, TextDelta):
                held = restorer.flush()  # the end: a held `[...` never became a placeholder
                if held:
                    yield TextDelta(held)
                yield event
                continue
            text = restorer.feed(event.text)
            if text:
                yield TextDelta(text) if text != event.text else event
    finally:
        await events.aclose()  # the inner stream records the interaction in its finally
