"""A small Server-Sent Events reader over an aiohttp response body.

Handles LF, CRLF (Gemini ends frames in CRLF CRLF) and CR line endings, multi-line
`data:` fields and comments, per the WHATWG event-stream grammar. Invalid UTF-8 is decoded
with replacement characters, as that grammar says (never a UnicodeDecodeError); the
providers then see a frame that is not their JSON, and answer with their own error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its `event:` name (default "message") and joined `data:` lines."""

    event: str
    data: str


async def iter_sse(content: aiohttp.StreamReader) -> AsyncIterator[SSEEvent]:
    """Yield each event in the stream; a trailing event without its blank line is dropped.

    Per network read: line endings are normalised to LF once, the buffer is split into
    blank-line-separated blocks, and the usual block (one `data:` line) is yielded without
    a per-line loop, since this runs for every token of every stream.
    """
    buffer = b""
    async for chunk in content.iter_any():
        blocks, buffer = _blocks(buffer + chunk, final=False)
        for event in _dispatch(blocks):
            yield event
    blocks, _ = _blocks(buffer, final=True)
    for event in _dispatch(blocks):
        yield event


def _blocks(buffer: bytes, *, final: bool) -> tuple[list[bytes], bytes]:
    """Complete blocks (LF line endings), and the incomplete rest to keep for the next read."""
    if b"\r" in buffer:
        # A trailing CR may be the first half of a CRLF split across reads: hold it back,
        # unless the stream has ended.
        held = b"\r" if buffer.endswith(b"\r") and not final else b""
        body = buffer[:-1] if held else buffer
        buffer = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + held
    blocks = buffer.split(b"\n\n")
    return blocks, blocks.pop()


def _dispatch(blocks: list[bytes]) -> Iterator[SSEEvent]:
    for block in blocks:
        if block.startswith(b"data: ") and b"\n" not in block:
            yield SSEEvent("message", block[6:].decode("utf-8", "replace"))
        elif block:
            yield from _parse_block(block.decode("utf-8", "replace"))


def _parse_block(block: str) -> list[SSEEvent]:
    # The general grammar: several lines, `event:` names, comments, empty lines inside.
    events: list[SSEEvent] = []
    name, data = "", list[str]()
    for line in [*block.split("\n"), ""]:
        if not line:
            if data:
                events.append(SSEEvent(name or "message", "\n".join(data)))
            name, data = "", []
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    return events
