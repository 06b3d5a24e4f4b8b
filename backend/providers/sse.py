"""A small Server-Sent Events reader over an aiohttp response body.

Handles LF, CRLF (Gemini ends frames in CRLF CRLF) and CR line endings, multi-line
`data:` fields and comments, per the WHATWG event-stream grammar. Invalid UTF-8 is decoded
with replacement characters, as that grammar says (never a UnicodeDecodeError); the
providers then see a frame that is not their JSON, and answer with their own error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp


# Not frozen: a frozen dataclass sets each field through object.__setattr__, over twice the
# cost of a plain one, and one of these is made for every token of every stream.
@dataclass(slots=True)
class SSEEvent:
    """One dispatched event: its `event:` name (default "message") and joined `data:` lines."""

    event: str
    data: str


RAW = "raw"  # the event name of text written outside the SSE framing (raw=True only)
_FIELDS = frozenset({"data", "event", "id", "retry"})


async def iter_sse(content: aiohttp.StreamReader, *, raw: bool = False) -> AsyncIterator[SSEEvent]:
    """Yield each event in the stream; a trailing event without its blank line is dropped.

    Per network read: line endings are normalised to LF once, the buffer is split into
    blank-line-separated blocks, and the usual block (one `data:` line) is yielded without
    a per-line loop or a generator of its own, since this runs for every token of every
    stream.

    With `raw`, lines that are no SSE field (Gemini writes a failing stream's
    google.rpc.Status as bare, pretty-printed JSON) come out as one `raw` event per block,
    the trailing one included, as google-genai's reader rebuilds them.
    """
    buffer, final = b"", False
    while not final:
        # readany() is what iter_any() awaits, without the iterator's own coroutine per read;
        # b"" is the end of the body.
        chunk = await content.readany()
        final = not chunk
        blocks, buffer = _blocks(buffer + chunk, final=final)
        if final and raw and buffer.strip():
            blocks.append(buffer)
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:  # the usual block
                yield SSEEvent("message", block[6:].decode("utf-8", "replace"))
            elif block:
                for event in _parse_block(block.decode("utf-8", "replace"), raw):
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


def _parse_block(block: str, raw: bool = False) -> list[SSEEvent]:
    # The general grammar: several lines, `event:` names, comments, empty lines inside.
    events: list[SSEEvent] = []
    name, data, bare = "", list[str](), list[str]()
    for line in [*block.split("\n"), ""]:
        if not line:
            if data:
                events.append(SSEEvent(name or "message", "\n".join(data)))
            if bare:
                events.append(SSEEvent(RAW, "\n".join(bare)))
            name, data, bare = "", [], []
            continue
        field, _, value = line.partition(":")
        if raw and field not in _FIELDS and not line.startswith(":"):
            bare.append(line)
            continue
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    return events
