"""The seed's request and response bodies for /chat/send and /chat/stream."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from backend.providers.base import FinishReason


def _unicode(value: str) -> str:
    # JSON's `\ud800` escape decodes to a lone surrogate: a str no UTF-8 encoder (orjson
    # writing the provider's body, the SSE stream, the database) accepts, so it stops here.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogate escapes)") from None
    return value


# Every string a request body carries: well-formed Unicode, as the JSON schema's `string` means.
Text = Annotated[str, AfterValidator(_unicode)]


class HistoryMessage(BaseModel):
    """A past turn. Only `user` and `assistant`: clients may not inject system prompts."""

    # Strict like every request body: a value the OpenAPI schema forbids (a number where it
    # says string) is refused, never coerced.
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["user", "assistant"]
    content: Text


class ChatRequest(BaseModel):
    """The body of both chat endpoints."""

    model_config = ConfigDict(
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "specialist_id": "00000000-0000-4000-8000-000000000001",
                    "message": "What is the capital of France?",
                    "conversation_history": [
                        {"role": "user", "content": "Hello"},
                        {"role": "assistant", "content": "Hi! How can I help?"},
                    ],
                }
            ]
        }
    )

    specialist_id: Annotated[Text, Field(min_length=1, max_length=100)]
    message: Annotated[Text, Field(min_length=1)]
    conversation_history: list[HistoryMessage] = Field(default_factory=list)


class ChatResponse(BaseModel):
    """The body /chat/send answers with."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "content": "The capital of France is Paris.",
                    "specialist_id": "7e9df62c-54c9-45f6-b637-ef65d34b2387",
                    "specialist_name": "General Assistant",
                    "provider": "openai",
                    "model": "gpt-4o",
                    "input_tokens": 45,
                    "output_tokens": 12,
                    "estimated_cost_usd": 0.000123,
                    "latency_ms": 1234.5,
                    "request_id": "5f0c6c1e9f7a4c7e8a7e0c2f3b1d9a10",
                    "finish_reason": "stop",
                }
            ]
        }
    )

    content: str
    specialist_id: str
    specialist_name: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    estimated_cost_usd: float | None
    latency_ms: float
    request_id: str
    # How the answer ended (stop, length, content_filter, refusal, tool_calls, error):
    # `refusal` marks `content` as the model's refusal, `length` as cut at the budget.
    finish_reason: FinishReason | None = None


class StreamChunk(BaseModel):
    """One SSE `message` event's data (documentation only: the hot path writes JSON directly)."""

    content: str
    is_final: bool
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    latency_ms: float = 0.0
    # Only on the final chunk:
    provider: str | None = None
    estimated_cost_usd: float | None = None
    request_id: str | None = None
    finish_reason: FinishReason | None = None


class ErrorBody(BaseModel):
    """Every error response: a stable code, a message safe to show, and context."""

    error: str
    message: str
    provider: str | None = None
    request_id: str | None = None
    # content_refused, content_filtered, output_budget_exhausted: why the answer is missing.
    finish_reason: str | None = None
    provider_reason: str | None = None
    max_output_tokens: int | None = None
