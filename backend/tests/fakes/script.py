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
