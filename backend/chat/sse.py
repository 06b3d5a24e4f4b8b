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
from starlette.types import Receive, Scope, Send

from backend.chat.stream import ChatStream
from backend.errors import PortalError
from backend.providers.base import TextDelta
from backend.resilience.disconnect import ClientDisconnected, unless_disconnected
from backend.usage.record import UsageRecord

_PREFIX = b"event: message\ndata: "
_ERROR_PREFIX = b"event: error\ndata: "
_END = b"\n\n"
# A content frame is the same bytes around the text every time: only the text is encoded.
_TEXT_HEAD = _PREFIX + b'{"content":'
_TEXT_TAIL = b',"is_final":false,"input_tokens":0,"output_tokens":0,"model":"","latency_ms":0.0}'
_TEXT_TAIL += _END


def text_frame(text: str) -> bytes:
    """The whole SSE `message` event for one piece of text (equal to encoding `text_chunk`)."""
    return _TEXT_HEAD + orjson.dumps(text) + _TEXT_TAIL


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
        "finish_reason": record.finish_reason,
    }


def error_data(exc: PortalError, request_id: str) -> dict[str, Any]:
    """The data of an `error` event: the error body plus the request id."""
    return {**exc.body(), "request_id": request_id}


async def sse_frames(stream: ChatStream) -> AsyncIterator[bytes]:
    """Message frames as text arrives, then one final frame; or a final error frame."""
    try:
        async for event in stream.events():
            if isinstance(event, TextDelta):
                yield text_frame(event.text)
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
    """An event stream that writes frames as they come and keep-alives when it is quiet.

    The body is read by a producer task into a list; the response loop sends whatever has
    gathered since its last write, joined into one write. The first frame goes out by itself,
    at once. Frames arriving apart (a model writing token by token) still go out one by one,
    at once; frames that arrived together (one upstream read holding many events) go out in
    one write instead of one each, each of which costs a trip through every middleware and a
    syscall; the frames gathered when the body ends go out with the end of the response, in
    the same write. Every frame stays its own SSE event. When nothing has come for
    `keepalive` seconds, a comment goes out (0: never).
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
        self._source = body
        self._keepalive = keepalive
        self._frames: list[bytes] = []
        self._ready = asyncio.Event()
        self._done = False
        self._quiet = False  # set by the keep-alive timer: nothing written for `keepalive` s
        self._last_write = 0.0
        self._timer: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream until the body ends or the client leaves (then the body is cancelled).

        Starlette does this with an anyio task group per response on ASGI < 2.4 (uvicorn
        says 2.3); one plain watcher task does the same for a fraction of the cost.
        """
        try:
            await unless_disconnected(receive, self.stream_response(send))
        except ClientDisconnected:
            return
        if self.background is not None:
            await self.background()

    async def stream_response(self, send: Send) -> None:
        """Send frames as they gather, keep-alives in the gaps; the producer ends with us."""
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        loop = asyncio.get_running_loop()
        self._last_write = loop.time()
        # One timer for the whole response, not a timeout armed around every wait.
        if self._keepalive:
            self._timer = loop.call_later(self._keepalive, self._tick)
        producer = asyncio.create_task(self._produce())
        last = b""
        try:
            while not self._done or self._frames:
                if not self._ready.is_set():
                    await self._ready.wait()
                self._ready.clear()
                if self._frames:
                    frames, self._frames = self._frames, []
                    body = frames[0] if len(frames) == 1 else b"".join(frames)
                    if self._done and _ended_cleanly(producer):
                        last = body  # the body is over: its last frames end the response
                        break
                    await self._send(send, body)
                elif self._quiet:
                    await self._send(send, KEEPALIVE)
                self._quiet = False
                self._last_write = loop.time()
            await producer  # surface a failure of the body itself
        finally:
            if self._timer is not None:
                self._timer.cancel()
            # On a client disconnect this cancels the body: the stream is recorded as such.
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
        await send({"type": "http.response.body", "body": last, "more_body": False})

    async def _produce(self) -> None:
        # An answer is bounded by its max output tokens, so the list needs no bound of its own.
        first = True
        try:
            async for frame in self._source:
                self._frames.append(frame)
                self._ready.set()
                if first:
                    # The first frame leaves at once, ahead of the rest of its upstream read
                    # (often the whole answer, from a fast upstream): the first token's wait
                    # is not the whole read's processing.
                    first = False
                    await asyncio.sleep(0)
        finally:
            try:
                # Left between two frames (cancelled in the pause above, the client gone),
                # the body waits at a `yield`, where no cancellation reaches it: close it now,
                # so its clean-up (the usage record) runs now, not when it is collected.
                # Ended any other way, it is closed already and this does nothing.
                aclose = getattr(self._source, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                self._done = True
                self._ready.set()

    def _tick(self) -> None:
        """The keep-alive timer: wake the response loop once `keepalive` seconds have passed
        since the last write, else look again when they will have."""
        loop = asyncio.get_running_loop()
        quiet_for = loop.time() - self._last_write
        if quiet_for >= self._keepalive:
            self._quiet = True
            self._ready.set()
            quiet_for = 0.0
        self._timer = loop.call_later(self._keepalive - quiet_for, self._tick)

    @staticmethod
    async def _send(send: Send, body: bytes) -> None:
        await send({"type": "http.response.body", "body": body, "more_body": True})


def _ended_cleanly(task: asyncio.Task[None]) -> bool:
    # `_done` is set in the producer's `finally`, in the step that ends the task: by the time
    # the response loop sees it, the task is done, and whether it failed is known.
    return task.done() and not task.cancelled() and task.exception() is None
