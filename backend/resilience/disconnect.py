"""Cancel a request's upstream work the moment its client goes away.

Before a response starts, neither uvicorn nor Starlette cancels a handler whose client
disconnected: a `/chat/send`, or a stream still waiting for its first token through
retries, would run to the end for nobody. `unless_disconnected` watches the ASGI
`receive` channel (which says `http.disconnect` once the socket closes) and cancels the
work; the chat service then records the request as `client_disconnected`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

from backend.errors import PortalError

T = TypeVar("T")


class ClientDisconnected(PortalError):
    """The client went away before its answer was ready (no one reads the response)."""

    code = "client_disconnected"


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """Await `work` in this task; cancel it and raise `ClientDisconnected` if the client leaves.

    Only for handlers whose request body has been read (FastAPI has, by the time a route
    runs): from then on `receive` yields nothing but the disconnect.
    """
    task = asyncio.current_task()
    assert task is not None
    watcher = asyncio.create_task(_cancel_on_disconnect(receive, task))
    try:
        return await work
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled() and watcher.result():
            task.uncancel()
            raise ClientDisconnected("the client disconnected") from None
        raise
    finally:
        watcher.cancel()


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[object]) -> bool:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            task.cancel()
            return True
