"""A small OpenAI-compatible upstream that hangs or stalls on cue and notes when it is hung up on.

The shared fakes cover errors, delays and cuts; this one adds what they cannot script: a
silence after some chunks (a stalled stream), and the moment the portal closed the
connection, seen from the upstream's side (aiohttp cancels the handler when its client
goes away, because `handler_cancellation` is on).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
from aiohttp import web


@dataclass
class Stall:
    """What the next responses do, and what happened to the earlier ones."""

    chunks: list[str] = field(default_factory=lambda: ["one", " two", " three"])
    hang_before_headers: float = 0.0
    stall_after: int | None = None  # chunks sent before the silence
    stall_seconds: float = 0.0
    requests: int = 0
    hung_up: list[float] = field(default_factory=list)  # time.monotonic() of each hang-up
    completed: int = 0


def _frame(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _respond(request: web.Request, state: Stall) -> web.StreamResponse:
    state.requests += 1
    body = await request.json()
    try:
        if state.hang_before_headers:
            await asyncio.sleep(state.hang_before_headers)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, text in enumerate(state.chunks):
            if index == state.stall_after:
                await asyncio.sleep(state.stall_seconds)
            delta = {"index": 0, "delta": {"content": text}, "finish_reason": None}
            await response.write(_frame({"model": body["model"], "choices": [delta]}))
        usage = {"prompt_tokens": 5, "completion_tokens": len(state.chunks)}
        stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
        await response.write(_frame({"model": body["model"], "choices": [stop]}))
        await response.write(_frame({"model": body["model"], "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except (asyncio.CancelledError, ConnectionResetError):
        state.hung_up.append(time.monotonic())
        raise
    state.completed += 1
    return response


@asynccontextmanager
async def start(state: Stall | None = None) -> AsyncIterator[tuple[str, Stall]]:
    """Serve on 127.0.0.1; yield (base URL ending in /v1, state)."""
    stall = state or Stall()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await _respond(request, stall)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1", stall
    finally:
        await runner.cleanup()
