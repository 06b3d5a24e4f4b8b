"""Shared by the usage tests: records, row reads, a stoppable TCP proxy, polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.usage.record import UsageRecord
from backend.usage.table import usage_log

ADMIN_TOKEN = "test-admin-token-0123456789"


def make_record(**overrides: Any) -> UsageRecord:
    """A plausible record with a fresh request id; override any field."""
    values: dict[str, Any] = {
        "request_id": uuid.uuid4().hex,
        "timestamp": datetime.now(UTC),
        "user_email_hash": "a" * 64,
        "specialist_id": "spec-1",
        "specialist_name": "Specialist One",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 10,
        "output_tokens": 5,
        "estimated_cost_usd": 0.001,
        "latency_ms": 12.5,
        "success": True,
        "streamed": False,
    }
    values.update(overrides)
    return UsageRecord(**values)


async def fetch_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every usage_log row as a dict, in id order."""
    async with engine.connect() as conn:
        result = await conn.execute(select(usage_log).order_by(usage_log.c.id))
        return [dict(row._mapping) for row in result]


async def count_rows(engine: AsyncEngine) -> int:
    """How many rows usage_log holds."""
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(usage_log))).scalar_one())


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float = 10.0, every: float = 0.02
) -> None:
    """Poll `check` until it is true; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(every)


class TcpProxy:
    """A TCP relay on 127.0.0.1 to a real server, for database outages without touching it.

    `stop()` refuses and cuts connections (a dead server); `hang()` keeps accepting but
    relays nothing (a server that never answers); `start()` and `resume()` undo them.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0

    async def start(self) -> None:
        """Listen (on the same port as before, if there was one)."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut every open one."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None

    def hang(self) -> None:
        """Accept, but pass no byte in either direction until `resume()`."""
        self._flowing.clear()

    def resume(self) -> None:
        """Relay again."""
        self._flowing.set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._flowing.wait()
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        self._writers.difference_update((writer, up_writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
