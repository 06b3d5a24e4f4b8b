"""SSE framing for /chat/stream, exactly as the seed shows it.

Frames are encoded straight to bytes with orjson: per chunk we build one small dict and
nothing else, since this runs for every token of every stream. The chunk objects are
built here and nowhere else, so the WebSocket sends exactly what the SSE stream sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Send

from backend.chat.service import ChatStream
from backend.errors import PortalError
from backend.providers.base import TextDelta
from backend.usage.record import UsageRecord

_PREFIX = b"event: message\ndata: "
_ERROR_PREFIX = b"event: error\ndata: "
_END = b"\n\n"


def text_chunk(text: str) -> dict[str, Any]:
    """The data of one content `message` event."""
    return {
        "content": text,
        "is_final": False,
        "input_tokens": 0,
        "output_tokens": 0,
        "model": "",
        "latency_ms": 0.0,
    }


def final_chunk(record: UsageRecord) -> dict[str, Any]:
    """The data of the last `message` event: usage, cost and who answered."""
    return {
        "content": "",
        "is_final": True,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "model": record.model,
        "latency_ms": record.latency_ms,
        "provider": record.provider,
        "estimated_cost_usd": record.estimated_cost_usd,
        "tokens_estimated": record.tokens_estimated,
        "request_id": record.request_id,
    }


def error_data(exc: PortalError, request_id: str) -> dict[str, Any]:
    """The data of an `error` event: the error body plus the request id."""
    return {**exc.body(), "request_id": request_id}


async def sse_frames(stream: ChatStream) -> AsyncIterator[bytes]:
    """Message frames as text arrives, then one final frame; or a final error frame."""
    try:
        async for event in stream.events():
            if isinstance(event, TextDelta):
                yield _PREFIX + orjson.dumps(text_chunk(event.text)) + _END
    except PortalError as exc:
        yield _ERROR_PREFIX + orjson.dumps(error_data(exc, stream.chat.context.request_id)) + _END
        return
    record = stream.record
    assert record is not None  # events() records in its finally, before we get here
    yield _PREFIX + orjson.dumps(final_chunk(record)) + _END


# A comment line: EventSource, httpx-sse and the SDKs skip it; proxies see bytes flowing.
KEEPALIVE = b": keep-alive\n\n"
# Proxies (nginx and friends) must pass SSE through as it is written.
NO_BUFFERING = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class SSEResponse(StreamingResponse):
    """An event stream that writes a keep-alive comment when it has been quiet a while.

    A timer task, not a race per chunk: the body loop only flips two flags per frame, and
    every `keepalive` seconds the task writes a comment if no frame went out meanwhile
    (so a gap gets its first comment after one to two intervals). `keepalive` 0: none.
    """

    def __init__(
        self,
        body: AsyncIterable[bytes],
        *,
        keepalive: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            body, media_type="text/event-stream", headers={**NO_BUFFERING, **(headers or {})}
        )
        self._keepalive = keepalive
        self._wrote = False
        self._writing = False

    async def stream_response(self, send: Send) -> None:
        """Starlette's loop, with the keep-alive task alongside it."""
        if self._keepalive <= 0:
            await super().stream_response(send)
            return
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        pinger = asyncio.create_task(self._ping(send))
        try:
            async for chunk in self.body_iterator:
                self._writing = True
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self._writing = False
                self._wrote = True
        finally:
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _ping(self, send: Send) -> None:
        while True:
            await asyncio.sleep(self._keepalive)
            if self._wrote or self._writing:
                # Never interleave with a frame a slow client is still taking.
                self._wrote = False
                continue
            await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
