"""A small Server-Sent Events reader over an aiohttp response body.

Handles LF, CRLF (Gemini ends frames in CRLF CRLF) and CR line endings, multi-line
`data:` fields and comments, per the WHATWG event-stream grammar.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its `event:` name (default "message") and joined `data:` lines."""

    event: str
    data: str


async def iter_sse(content: aiohttp.StreamReader) -> AsyncIterator[SSEEvent]:
    """Yield each event in the stream; a trailing event without its blank line is dropped."""
    event = ""
    data: list[str] = []
    buffer = b""
    async for chunk in content.iter_any():
        buffer += chunk
        lines = buffer.splitlines(keepends=True)
        # Keep an incomplete last line (or a lone CR that may precede LF) for the next chunk.
        buffer = lines.pop() if lines and not _complete(lines[-1]) else b""
        for raw in lines:
            line = raw.rstrip(b"\r\n").decode("utf-8")
            if not line:
                if data:
                    yield SSEEvent(event or "message", "\n".join(data))
                event, data = "", []
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value


def _complete(line: bytes) -> bool:
    # A line ending in a bare CR may be the first half of CRLF split across chunks.
    return line.endswith(b"\n")
