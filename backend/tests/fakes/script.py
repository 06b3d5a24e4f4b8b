"""What a fake upstream should do next, and what it was sent: shared by every provider fake.

Tests set fields on `Script` to pick a behaviour; each fake renders it in its own API's
real wire format (JSON bodies, SSE event sequence, error bodies, status codes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Script:
    """The next responses' behaviour. Defaults: a two-chunk success with usage."""

    chunks: list[str] = field(default_factory=lambda: ["Hello", " from", " the fake"])
    input_tokens: int = 11
    output_tokens: int = 7
    cached_input_tokens: int = 0
    model: str | None = None  # None: echo the requested model
    omit_usage: bool = False  # a server that never reports usage
    # Errors: an HTTP status answered before any body, `fail_times` times (None: always).
    error_status: int | None = None
    error_message: str = "fake upstream error"
    retry_after: str | None = None
    fail_times: int | None = None
    # Timing and stream faults.
    first_byte_delay: float = 0.0
    chunk_delay: float = 0.0
    cut_after_chunks: int | None = None  # drop the connection after N text chunks
    omit_terminal: bool = False  # end the body cleanly but without the terminal event
    stream_error_after: int | None = None  # send the API's in-stream error event after N chunks
    stream_error_kind: str | None = None  # that error's `type` (None: the fake's usual one)
    stream_error_code: str | int | None = None  # and its `code` (Gemini: the HTTP-like number)
    # How an answer ends, in the provider's own words (None: its usual normal end), and
    # the documented ways it may be no answer at all.
    stop_reason: str | None = None  # OpenAI finish_reason / Anthropic stop_reason
    refusal: str | None = None  # OpenAI: `message.refusal` / `delta.refusal`, content null
    reasoning_tokens: int = 0  # of output_tokens, spent reasoning (OpenAI's details)
    error_with_200: bool = False  # the whole body is the API's error object, with HTTP 200
    # Anthropic: prompt-cache writes (part of input_tokens), and a proxy's habit of putting
    # the first text into content_block_start instead of an empty block.
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    text_in_block_start: bool = False
    # Reasoning streamed before the answer: Anthropic `thinking_delta`s in a thinking block,
    # an OpenAI-compatible server's `delta.reasoning_content` (vLLM, DeepSeek).
    thinking: list[str] = field(default_factory=list)


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


@dataclass
class FakeState:
    """Shared between a fake's handlers and the test that drives it."""

    script: Script = field(default_factory=Script)
    requests: list[RecordedRequest] = field(default_factory=list)
    failures_served: int = 0
    disconnects: int = 0  # responses whose client went away before the fake finished
    open_responses: int = 0

    @contextmanager
    def streaming(self) -> Iterator[None]:
        """Around a streamed response: count it open, and count a client that leaves early."""
        self.open_responses += 1
        try:
            yield
        except ConnectionResetError:
            self.disconnects += 1
        except asyncio.CancelledError:
            self.disconnects += 1
            raise
        finally:
            self.open_responses -= 1

    def should_fail(self) -> bool:
        """True when this request should get the scripted error status."""
        script = self.script
        if script.error_status is None:
            return False
        if script.fail_times is not None and self.failures_served >= script.fail_times:
            return False
        self.failures_served += 1
        return True
