"""The provider abstraction and the small types at its edges.

Raw JSON never leaves a provider module: callers see only these types.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["user", "assistant"]

#: How an answer ended, the same words for every provider (docs/finish-reasons.md):
#: `stop` finished normally; `length` hit the output budget (or the context window);
#: `content_filter` a safety system blocked the prompt or the answer; `refusal` the model
#: itself declined; `tool_calls` it asked for a tool; `error` the provider could not finish.
FinishReason = Literal["stop", "length", "content_filter", "refusal", "tool_calls", "error"]
FINISH_REASONS: tuple[FinishReason, ...] = (
    "stop", "length", "content_filter", "refusal", "tool_calls", "error",
)


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of the conversation; system prompts travel separately."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What a provider needs for one call, already validated by the chat service."""

    model: str
    messages: tuple[Message, ...]
    system: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None


# Not frozen, though never changed once built (the same for the other per-request
# and per-token types here and in usage, budgets, ratelimit, chat, resilience):
# a frozen dataclass sets each field through object.__setattr__, three times the
# cost of a plain one, and these are built on every request or every token.
@dataclass(slots=True)
class Usage:
    """Token counts for one call. `reported` is False when we estimated them ourselves.

    `input_tokens` counts every input token the call processed, cached ones included (the
    OpenAI and Gemini convention; the Anthropic adapter adds its separately reported cache
    reads and writes), so `cached_input_tokens` is a part of it, never extra.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int | None = None
    reported: bool = True
    # Cache writes (Anthropic): a part of input_tokens priced above plain input; of them,
    # the ones written for an hour cost more again than the 5-minute ones.
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    # Reasoning (thinking) tokens: a part of output_tokens the answer's text does not show.
    reasoning_tokens: int | None = None

    def __add__(self, other: Usage) -> Usage:
        """Two separately billed calls' counts together (Gemini's continuation hops)."""
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=_add(self.cached_input_tokens, other.cached_input_tokens),
            reported=self.reported and other.reported,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            reasoning_tokens=_add(self.reasoning_tokens, other.reasoning_tokens),
        )


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


@dataclass(slots=True)
class TextDelta:
    """A piece of streamed text, relayed to the client as it arrives."""

    text: str
    # True for refusal text (OpenAI's `delta.refusal`): relayed as content all the same.
    refusal: bool = False


@dataclass(frozen=True, slots=True)
class Thinking:
    """A sign of life while the model reasons: counts for the first-token bound, shows nothing."""


@dataclass(slots=True)
class StreamEnd:
    """The last event of every successful stream: the final usage and the model that answered.

    `finish_reason` is normalised; `native_finish` is the provider's own word for it.
    """

    model: str
    usage: Usage | None
    finish_reason: FinishReason | None = None
    native_finish: str | None = None


StreamEvent = TextDelta | Thinking | StreamEnd


@dataclass(slots=True)
class Completion:
    """A finished non-streaming answer."""

    text: str
    model: str
    usage: Usage | None
    finish_reason: FinishReason | None = None
    extra: dict[str, str] = field(default_factory=dict)
    native_finish: str | None = None
    # True when `text` is the model's refusal (OpenAI's `message.refusal`), not an answer.
    refusal: bool = False


class Provider(ABC):
    """One LLM API. `complete` and `stream` share request building, usage and error mapping."""

    #: The provider's name as specialists and usage records spell it.
    name: str

    def thinks_silently(self, model: str) -> bool:
        """True for a model that sends nothing while it reasons (the first-token bound waits)."""
        return False

    @abstractmethod
    async def complete(self, request: CompletionRequest) -> Completion:
        """Run one non-streaming call; raise a `ProviderError` subclass on failure."""

    @abstractmethod
    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Yield `TextDelta`s as they arrive, then exactly one `StreamEnd`; raise on failure."""
