"""The offline demo provider: no key, no network, a deterministic and clearly labelled reply.

It exists so a fresh install can chat end to end; it is only ever used by specialists
that name `provider: demo`, never as a silent stand-in for a configured provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from backend.providers.base import (
    Completion,
    CompletionRequest,
    Provider,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
)

DEMO_PREFIX = "[demo reply, no LLM was called]"


class DemoProvider(Provider):
    """Echoes a summary of the request back, word by word."""

    name = "demo"

    def __init__(self, *, chunk_delay_seconds: float = 0.0) -> None:
        self._delay = chunk_delay_seconds

    async def complete(self, request: CompletionRequest) -> Completion:
        """Return the whole demo reply at once."""
        words = _reply_words(request)
        return Completion(
            text="".join(words), model=request.model, usage=_usage(request, words),
            finish_reason="stop",
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Yield the demo reply one word at a time."""
        words = _reply_words(request)
        for word in words:
            if self._delay:
                await asyncio.sleep(self._delay)
            yield TextDelta(word)
        yield StreamEnd(model=request.model, usage=_usage(request, words), finish_reason="stop")


def _reply_words(request: CompletionRequest) -> list[str]:
    last = request.messages[-1].content if request.messages else ""
    preview = last if len(last) <= 80 else last[:77] + "..."
    text = (
        f"{DEMO_PREFIX} You said: \"{preview}\". This answer comes from the offline demo "
        f"provider ({len(request.messages)} message(s) in the conversation). Set OPENAI_API_KEY, "
        "ANTHROPIC_API_KEY or GOOGLE_API_KEY to talk to a real model."
    )
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])]


def _usage(request: CompletionRequest, words: list[str]) -> Usage:
    # A rough whitespace count: the demo has no tokenizer, and its price is zero anyway.
    prompt = (request.system or "") + " ".join(m.content for m in request.messages)
    return Usage(input_tokens=len(prompt.split()), output_tokens=len(words))
