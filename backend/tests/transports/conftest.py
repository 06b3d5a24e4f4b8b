"""The chat tests' running portal, plus reading its usage records and WebSocket helpers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection

from backend.database.engine import make_engine
from backend.tests.chat.conftest import Portal, portal, portal_factory
from backend.usage.table import usage_log

__all__ = ["Portal", "portal", "portal_factory"]


def ws_url(portal: Portal) -> str:
    """The portal's WebSocket chat URL."""
    return portal.url.replace("http://", "ws://", 1) + "/chat/ws"


async def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next server message, parsed (a test fails rather than hang on a silent server)."""
    async with asyncio.timeout(5):
        message: dict[str, Any] = orjson.loads(await ws.recv())
    return message


async def answer(ws: ClientConnection) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every message of one turn: the content chunks, and the final chunk or the error."""
    chunks = []
    while True:
        message = await receive(ws)
        if message["type"] == "error" or message.get("is_final"):
            return chunks, message
        chunks.append(message)


async def usage_rows(portal: Portal, expected: int, *, settle: float = 0.3) -> list[dict[str, Any]]:
    """The portal's usage rows once there are `expected` of them, and no more arrive.

    Rows are written by a background batcher, so wait for them; then wait a little longer
    to catch a second record for the same request, which would be a bug.
    """
    engine = make_engine(portal.settings.database_url)
    try:
        deadline = time.monotonic() + 5
        rows = await _rows(engine)
        while len(rows) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            rows = await _rows(engine)
        await asyncio.sleep(settle)
        return await _rows(engine)
    finally:
        await engine.dispose()


async def _rows(engine: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(select(usage_log).order_by(usage_log.c.id))
        return [dict(row._mapping) for row in result]
