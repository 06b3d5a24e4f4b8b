"""The provider abstraction and the small types at its edges.

Raw JSON never leaves a provider module: callers see only these types.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["user", "assistant"]


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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of streamed text, relayed to the client as it arrives."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last event of every successful stream: the final usage and the model that answered."""

    model: str
    usage: Usage | None
    finish_reason: str | None = None


StreamEvent = TextDelta | StreamEnd


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished non-streaming answer."""

    text: str
    model: str
    usage: Usage | None
    finish_reason: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Provider(ABC):
    """One LLM API. `complete` and `stream` share request building, usage and error mapping."""

    #: The provider's name as specialists and usage records spell it.
    name: str

    @abstractmethod
    async def complete(self, request: CompletionRequest) -> Completion:
        """Run one non-streaming call; raise a `ProviderError` subclass on failure."""

    @abstractmethod
    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Yield `TextDelta`s as they arrive, then exactly one `StreamEnd`; raise on failure."""
