"""The SSE reader: every line ending, events split anywhere across reads, the full grammar."""

from __future__ import annotations

from typing import Any

import pytest

from backend.providers.sse import SSEEvent, iter_sse


class _Reads:
    """Stands in for aiohttp's StreamReader: hands out the given reads in order."""

    def __init__(self, reads: list[bytes]) -> None:
        self._reads = iter(reads)

    async def readany(self) -> bytes:
        """The next read; b"" once there are none (the end of the body), as aiohttp's."""
        return next(self._reads, b"")


async def _events(reads: list[bytes]) -> list[SSEEvent]:
    content: Any = _Reads(reads)
    return [event async for event in iter_sse(content)]


STREAM = (
    b"event: message_start\ndata: {\"a\": 1}\n\n"
    b": a comment\n\n"
    b"data: line one\ndata: line two\n\n"
    b"data: {\"b\": 2}\n\n"
    b"data:no-space\n\n"
)
EXPECTED = [
    SSEEvent("message_start", '{"a": 1}'),
    SSEEvent("message", "line one\nline two"),
    SSEEvent("message", '{"b": 2}'),
    SSEEvent("message", "no-space"),
]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
async def test_every_line_ending_reads_the_same(ending: bytes) -> None:
    assert await _events([STREAM.replace(b"\n", ending)]) == EXPECTED


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
async def test_events_split_at_every_byte_across_reads(ending: bytes) -> None:
    raw = STREAM.replace(b"\n", ending)
    for cut in range(1, len(raw)):
        assert await _events([raw[:cut], raw[cut:]]) == EXPECTED, cut
    assert await _events([raw[i : i + 1] for i in range(len(raw))]) == EXPECTED


async def test_an_unterminated_event_is_dropped_and_extra_blank_lines_are_harmless() -> None:
    assert await _events([b"\n\ndata: a\n\n\n\ndata: b\n\n\ndata: cut"]) == [
        SSEEvent("message", "a"),
        SSEEvent("message", "b"),
    ]


async def test_utf8_split_inside_a_character_survives() -> None:
    raw = "data: café ✓\n\n".encode()
    cut = raw.index("✓".encode()) + 1
    assert await _events([raw[:cut], raw[cut:]]) == [SSEEvent("message", "café ✓")]
