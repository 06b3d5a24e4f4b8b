"""Start an aiohttp application on 127.0.0.1 on a free port, for fake upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run `app` until the block ends; yield its base URL (http://127.0.0.1:PORT)."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def cut(request: web.Request, response: web.StreamResponse) -> None:
    """Drop the connection with the body unfinished (no final chunk, or short of its
    Content-Length): what a dropped upstream connection looks like to the client."""
    response.force_close()
    if request.transport is not None:
        request.transport.close()
