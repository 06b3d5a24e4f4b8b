"""Raw-socket clients for the front-door tests: what httpx and aiohttp will not send
(a declared length with no body, a body that never ends, headers a byte at a time)."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class Answer:
    """What came back on one raw connection."""

    status: int | None  # None: the server closed without answering
    head: bytes
    body: bytes
    seconds: float  # from the first byte sent to the response (or the close)
    sent: int  # bytes the client managed to write
    closed: bool  # the server closed the connection after answering


def host_port(url: str) -> tuple[str, int]:
    """The host and port of a base URL."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def exchange(
    url: str, head: bytes, body: list[bytes] | None = None, *,
    gap: float = 0.0, within: float = 10.0,
) -> Answer:
    """Send `head`, then each piece of `body` (`gap` seconds apart) until the server
    answers, reading at the same time so the answer is seen even if writing fails."""
    reader, writer = await asyncio.open_connection(*host_port(url))
    started = time.monotonic()
    sent = 0

    async def write_all() -> None:
        nonlocal sent
        try:
            writer.write(head)
            await writer.drain()
            sent += len(head)
            for piece in body or ():
                await asyncio.sleep(gap)  # even 0 lets the reader see an early answer
                writer.write(piece)
                await writer.drain()
                sent += len(piece)
        except (ConnectionError, OSError):
            pass  # the server refused and closed: the reader has its answer

    writing = asyncio.create_task(write_all())
    try:
        async with asyncio.timeout(within):
            response = await _read_response(reader)
        seconds = time.monotonic() - started
        writing.cancel()  # as a client does once it has its answer (curl, browsers)
        async with asyncio.timeout(within):
            closed = await _closed(reader)
    finally:
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)
        writer.close()
    status, head_bytes, body_bytes = response
    return Answer(status, head_bytes, body_bytes, seconds, sent, closed)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int | None, bytes, bytes]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None, b"", b""
    match = re.match(rb"HTTP/1\.1 (\d{3})", head)
    assert match, head[:200]
    length = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
    body = await reader.readexactly(int(length.group(1))) if length else b""
    return int(match.group(1)), head, body


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read(1) == b""
    except ConnectionError:
        return True


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in KiB."""
    return _status_kib(pid, "VmHWM")


def rss_kib(pid: int) -> int:
    """The process's resident memory now (VmRSS), in KiB."""
    return _status_kib(pid, "VmRSS")


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")
