"""The Chat Completions request the portal accepts, and its translation to a `ChatRequest`.

The specialist decides the system prompt and the sampling parameters, so a client's
`system`/`developer` messages are dropped and parameters such as `temperature` or
`max_tokens` are accepted and ignored: an existing client keeps working, and cannot
override the specialist. What would silently change the answer's meaning (tools, several
choices, a response format, non-text content) is refused with a 400 naming the parameter.
Every model is strict: a field the schema types as boolean or integer takes only a JSON
boolean or integer (`include_usage: 0` is a 400, not a silent `false`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from backend.chat.schemas import ChatRequest, HistoryMessage, Text
from backend.openai_api.errors import InvalidParameter

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
_DROPPED_ROLES = frozenset({"system", "developer"})

# The OpenAPI document names only what is served: `tool`/`function` roles, non-text parts,
# tools, n != 1 and other response formats parse (so the 400 can say why) but are refused.
_SERVED_ROLES = WithJsonSchema(
    {"type": "string", "enum": ["system", "developer", "user", "assistant"]}
)
_NOTHING = {"maxItems": 0, "description": "Not supported: only null or [] is accepted"}


class ContentPart(BaseModel):
    """One part of a list-valued `content`; only `text` parts are served."""

    model_config = ConfigDict(
        extra="allow", strict=True, json_schema_extra={"required": ["type", "text"]}
    )

    type: Annotated[str, WithJsonSchema({"type": "string", "const": "text"})]
    text: Annotated[Text | None, WithJsonSchema({"type": "string"})] = None


class InputMessage(BaseModel):
    """One message of `messages` (`name`, `tool_calls` and the like are accepted, unused)."""

    model_config = ConfigDict(extra="allow", strict=True)

    role: Annotated[Role, _SERVED_ROLES]
    content: Text | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    """`stream_options`: only `include_usage` changes what the portal sends."""

    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`; parameters not listed here are accepted and ignored."""

    model_config = ConfigDict(
        extra="allow",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "00000000-0000-4000-8000-000000000001",
                    "messages": [{"role": "user", "content": "What is the capital of France?"}],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
            ]
        },
    )

    model: Annotated[Text, Field(min_length=1, max_length=200)]
    messages: Annotated[list[InputMessage], Field(
        min_length=1, description="The last message other than system and developer ones "
        "must be a user message with text; user and assistant messages need content",
    )]
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: Annotated[int | None, Field(json_schema_extra={"minimum": 1, "maximum": 1})] = None
    tools: Annotated[list[Any] | None, Field(json_schema_extra=_NOTHING)] = None
    functions: Annotated[list[Any] | None, Field(json_schema_extra=_NOTHING)] = None
    response_format: Annotated[dict[str, Any] | None, Field(json_schema_extra={
        "properties": {"type": {"const": "text"}}
    })] = None

    @property
    def include_usage(self) -> bool:
        """Whether a streamed answer ends with a usage chunk (empty `choices`)."""
        return bool(self.stream_options and self.stream_options.include_usage)


def to_chat_request(body: ChatCompletionRequest, *, specialist_id: str) -> ChatRequest:
    """The portal request: the last user message is the new one, the rest is history."""
    _refuse_unsupported(body)
    turns: list[tuple[Literal["user", "assistant"], str]] = []
    for index, message in enumerate(body.messages):
        if message.role in _DROPPED_ROLES:
            continue  # the specialist's system prompt applies, and comes first
        if message.role not in ("user", "assistant"):
            raise InvalidParameter(
                f"'{message.role}' messages are not supported: the portal does not call tools",
                param=f"messages[{index}].role",
            )
        role: Literal["user", "assistant"] = "user" if message.role == "user" else "assistant"
        turns.append((role, _text(message.content, f"messages[{index}].content")))
    if not turns or turns[-1][0] != "user":
        raise InvalidParameter(
            "the last message (other than system or developer ones) must be a user message",
            param="messages",
        )
    if not turns[-1][1]:
        raise InvalidParameter("the last user message is empty", param="messages")
    *history, (_, last) = turns
    # Built, not validated a second time: every value here already passed this request's own
    # (strict) validation or the checks above, and the specialist id is a resolved one.
    return ChatRequest.model_construct(
        specialist_id=specialist_id,
        message=last,
        conversation_history=[HistoryMessage.model_construct(role=r, content=c)
                              for r, c in history],
    )


def _refuse_unsupported(body: ChatCompletionRequest) -> None:
    if body.n is not None and body.n != 1:
        raise InvalidParameter(
            "only one choice per request is supported (n=1)", param="n",
            code="unsupported_value",
        )
    for name in ("tools", "functions"):
        if getattr(body, name):
            raise InvalidParameter(
                f"'{name}' is not supported: the portal does not call tools", param=name,
                code="unsupported_parameter",
            )
    kind = (body.response_format or {}).get("type", "text")
    if kind != "text":
        raise InvalidParameter(
            f"response_format '{kind}' is not supported; only 'text' is",
            param="response_format", code="unsupported_value",
        )


def _text(content: str | list[ContentPart] | None, param: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        raise InvalidParameter("content is required", param=param)
    texts = []
    for index, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise InvalidParameter(
                f"only text content parts are supported, not '{part.type}'",
                param=f"{param}[{index}]", code="unsupported_value",
            )
        texts.append(part.text)
    # Separate parts are separate paragraphs (as vLLM and others join them), not one word.
    return "\n".join(texts)
