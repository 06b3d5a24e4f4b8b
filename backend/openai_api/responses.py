"""Chat Completions responses: the whole-answer body and the `chat.completion.chunk` stream.

Field names and order follow what the official SDK parses (openai/types/chat/
chat_completion.py, chat_completion_chunk.py, completion_usage.py) and how it reads a
stream (openai/_streaming.py: `data:` frames, a frame with an `error` key raises,
`data: [DONE]` ends). Besides OpenAI's fields, the last object carries `portal`: the
request id, the provider and model that answered, and the estimated cost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from backend.api.errors import status_for
from backend.chat.schemas import ChatResponse
from backend.chat.stream import ChatStream
from backend.errors import PortalError
from backend.openai_api.errors import error_type
from backend.providers.base import StreamEnd, TextDelta
from backend.usage.record import UsageRecord

DONE = b"data: [DONE]\n\n"
_END = b"\n\n"
_OPEN_CHOICE = b',"logprobs":null,"finish_reason":null}]}\n\n'

# Our finish reasons in OpenAI's vocabulary. A refusal is `stop` with the text in
# `message.refusal` (or `delta.refusal`), as OpenAI itself answers one; `error` (text, then
# the provider failed to finish) has no OpenAI word and ends as `stop`.
_OPENAI_FINISH = {
    "length": "length", "content_filter": "content_filter", "tool_calls": "tool_calls",
}


def finish_reason(reason: str | None) -> str:
    """OpenAI's `finish_reason` for one of ours."""
    return _OPENAI_FINISH.get(reason or "stop", "stop")


def usage_object(input_tokens: int, output_tokens: int) -> dict[str, int]:
    """OpenAI's `usage` object."""
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def completion_body(response: ChatResponse, *, model: str, created: int) -> dict[str, Any]:
    """A `chat.completion` object for a whole answer; `model` is the name the client used."""
    refused = response.finish_reason == "refusal"
    return {
        "id": f"chatcmpl-{response.request_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None if refused else response.content,
                    "refusal": response.content if refused else None,
                },
                "logprobs": None,
                "finish_reason": finish_reason(response.finish_reason),
            }
        ],
        "usage": usage_object(response.input_tokens, response.output_tokens),
        "system_fingerprint": None,
        "portal": {
            "request_id": response.request_id,
            "specialist_id": response.specialist_id,
            "provider": response.provider,
            "model": response.model,
            "estimated_cost_usd": response.estimated_cost_usd,
            "latency_ms": response.latency_ms,
            "finish_reason": response.finish_reason,
        },
    }


class ChunkWriter:
    """Encodes one streamed answer's frames; the part every chunk shares is encoded once."""

    def __init__(self, *, request_id: str, created: int, model: str, include_usage: bool) -> None:
        head: dict[str, Any] = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        if include_usage:  # OpenAI then sends `"usage": null` on every chunk but the last
            head["usage"] = None
        self.include_usage = include_usage
        self._head = head
        # Per text chunk only the text itself is encoded: `{head..., "choices":[{...` + text.
        self._prefix = b"data: " + orjson.dumps(head)[:-1] + b',"choices":[{"index":0,"delta":'

    def role(self) -> bytes:
        """The first chunk: the assistant role, empty content."""
        return self._prefix + b'{"role":"assistant","content":""}' + _OPEN_CHOICE

    def text(self, text: str) -> bytes:
        """One chunk of answer text."""
        return self._prefix + b'{"content":' + orjson.dumps(text) + b"}" + _OPEN_CHOICE

    def refusal(self, text: str) -> bytes:
        """One chunk of refusal text (`delta.refusal`, as OpenAI streams a refusal)."""
        return self._prefix + b'{"refusal":' + orjson.dumps(text) + b"}" + _OPEN_CHOICE

    def finish(self, reason: str, portal: dict[str, Any] | None) -> bytes:
        """The chunk with the finish reason (and, without a usage chunk, the portal's facts)."""
        choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}
        chunk = {**self._head, "choices": [choice]}
        if portal is not None:
            chunk["portal"] = portal
        return b"data: " + orjson.dumps(chunk) + _END

    def usage(self, record: UsageRecord, portal: dict[str, Any]) -> bytes:
        """The usage chunk, sent only when asked for: empty `choices`, then `usage`."""
        chunk = {
            **self._head,
            "choices": [],
            "usage": usage_object(record.input_tokens, record.output_tokens),
            "portal": portal,
        }
        return b"data: " + orjson.dumps(chunk) + _END

    @staticmethod
    def error(exc: PortalError) -> bytes:
        """A failure after the stream started: OpenAI's in-stream error frame."""
        body = exc.body()
        error: dict[str, Any] = {
            "message": exc.message,
            # The type the same failure would have had as an HTTP status (a rate limit,
            # a refused request), so a client tells them apart as it would over HTTP.
            "type": error_type(status_for(exc)),
            "param": None,
            "code": exc.code,
        }
        for key in ("provider", "finish_reason", "provider_reason", "max_output_tokens"):
            if body.get(key) is not None:
                error[key] = body[key]
        return b"data: " + orjson.dumps({"error": error}) + _END


def portal_facts(record: UsageRecord) -> dict[str, Any]:
    """What the portal adds to the last chunk: who answered, for how much."""
    return {
        "request_id": record.request_id,
        "specialist_id": record.specialist_id,
        "provider": record.provider,
        "model": record.model,
        "estimated_cost_usd": record.estimated_cost_usd,
        "latency_ms": record.latency_ms,
        "finish_reason": record.finish_reason,
    }


async def chunk_frames(stream: ChatStream, writer: ChunkWriter) -> AsyncIterator[bytes]:
    """Role chunk, text chunks, finish chunk, usage chunk if asked, `[DONE]`; or an error.

    The role chunk travels with the frame after it, so the first frame the response sends
    ahead of the rest (see SSEResponse) carries the first text, not the role alone.
    """
    head = writer.role()
    reason: str | None = None
    try:
        async for event in stream.events():
            if isinstance(event, TextDelta):
                if event.text:
                    frame = writer.refusal(event.text) if event.refusal else writer.text(event.text)
                    if head:
                        frame, head = head + frame, b""
                    yield frame
            elif isinstance(event, StreamEnd):
                reason = event.finish_reason
    except PortalError as exc:
        # OpenAI ends a failed stream with the error frame alone; the SDK raises on it.
        yield head + writer.error(exc)
        return
    record = stream.record
    assert record is not None  # events() records in its finally, before we get here
    portal = portal_facts(record)
    if writer.include_usage:
        yield head + writer.finish(finish_reason(reason), None)
        yield writer.usage(record, portal)
    else:
        yield head + writer.finish(finish_reason(reason), portal)
    yield DONE
