"""SSEResponse: frames that arrive together leave in one write, apart ones at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backend.chat.sse import KEEPALIVE, SSEResponse


async def _run(response: SSEResponse) -> list[tuple[float, bytes]]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    writes: list[tuple[float, bytes]] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            writes.append((loop.time() - start, message["body"]))

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    await response(scope, receive, send)
    return writes


async def _one_frame_then_silence(
    closed: asyncio.Event, produced: asyncio.Event | None = None
) -> AsyncIterator[bytes]:
    """A body that makes one frame and then waits forever; `closed` once it is closed."""
    try:
        if produced is not None:
            produced.set()
        yield b"data: a\n\n"
        await asyncio.sleep(3600)
        yield b"never"
    finally:
        closed.set()


async def test_frames_ready_together_share_a_write_and_later_ones_are_not_held_back() -> None:
    async def body() -> AsyncIterator[bytes]:
        for i in range(4):
            yield f"data: {i}\n\n".encode()  # no await between: one upstream read's worth
        await asyncio.sleep(0.2)
        yield b"data: 4\n\n"

    writes = await _run(SSEResponse(body(), keepalive=0))
    assert [w for _, w in writes] == [
        b"data: 0\n\n", b"data: 1\n\ndata: 2\n\ndata: 3\n\n", b"data: 4\n\n"
    ]
    assert writes[1][0] < 0.1  # the first four went out before the pause, not after
    assert writes[2][0] >= 0.2


async def test_the_first_frame_leaves_before_the_rest_of_its_read_is_made() -> None:
    """A fast upstream hands over the whole answer in one read: the first token must not
    wait for the rest of it to be processed (here, a body still busy after its first frame)."""
    sent_first_at: list[int] = []
    made = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal made
        for i in range(3):
            made += 1
            yield f"data: {i}\n\n".encode()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not sent_first_at:
            sent_first_at.append(made)

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    await SSEResponse(body(), keepalive=0)({"type": "http"}, receive, send)
    assert sent_first_at == [1]  # sent when one frame had been made, not all three


async def _messages(
    response: SSEResponse, sent: list[tuple[bytes, bool]] | None = None
) -> list[tuple[bytes, bool]]:
    """Each body message's bytes and `more_body`, into `sent` (kept if the response raises)."""
    sent = [] if sent is None else sent

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append((message["body"], message["more_body"]))

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
    return sent


async def test_the_last_frames_end_the_response_in_the_same_message() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"data: 0\n\n"
        await asyncio.sleep(0.05)
        yield b"data: 1\n\n"
        yield b"data: end\n\n"

    assert await _messages(SSEResponse(body(), keepalive=0)) == [
        (b"data: 0\n\n", True), (b"data: 1\n\ndata: end\n\n", False),
    ]


async def test_a_body_that_fails_still_sends_what_it_made_and_does_not_end_cleanly() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"data: 0\n\n"
        await asyncio.sleep(0.05)
        yield b"data: 1\n\n"
        raise RuntimeError("broken body")

    sent: list[tuple[bytes, bool]] = []
    with pytest.raises(RuntimeError, match="broken body"):
        await _messages(SSEResponse(body(), keepalive=0), sent)
    assert sent == [(b"data: 0\n\n", True), (b"data: 1\n\n", True)]


async def test_a_client_leaving_right_after_the_first_frame_closes_the_body_at_once() -> None:
    """The disconnect lands while the producer pauses after the first frame, with the body
    waiting at its `yield`: the body's clean-up (where a chat stream records its usage) must
    run before the response returns, not when the generator is garbage collected."""
    produced, closed = asyncio.Event(), asyncio.Event()

    async def receive() -> dict[str, Any]:
        await produced.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        pass

    # Held here: collecting the body would close it too, and hide a late close.
    source = _one_frame_then_silence(closed, produced)
    await asyncio.wait_for(SSEResponse(source, keepalive=0)({"type": "http"}, receive, send), 2)
    assert closed.is_set()


async def test_a_quiet_stream_gets_keepalive_comments_between_frames() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"data: a\n\n"
        await asyncio.sleep(0.35)
        yield b"data: b\n\n"

    writes = [w for _, w in await _run(SSEResponse(body(), keepalive=0.1))]
    assert writes[0] == b"data: a\n\n" and writes[-1] == b"data: b\n\n"
    assert 2 <= writes.count(KEEPALIVE) <= 4


async def test_frames_closer_together_than_the_keepalive_get_none_between_them() -> None:
    # One timer serves the whole response: each time it fires it must measure the silence
    # from the last write, not from when it was armed, or a steady stream would get
    # keep-alives it does not need.
    async def body() -> AsyncIterator[bytes]:
        for i in range(8):
            yield f"data: {i}\n\n".encode()
            await asyncio.sleep(0.06)

    writes = await _run(SSEResponse(body(), keepalive=0.1))
    assert KEEPALIVE not in [w for _, w in writes]
    assert len(writes) == 8


async def test_a_keepalive_comes_a_full_interval_after_the_last_write() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"data: a\n\n"
        await asyncio.sleep(0.15)
        yield b"data: b\n\n"
        await asyncio.sleep(0.35)
        yield b"data: c\n\n"

    writes = await _run(SSEResponse(body(), keepalive=0.2))
    keepalives = [t for t, w in writes if w == KEEPALIVE]
    # Armed at 0, the timer fires at 0.2: only 0.05 s after `b`, too soon; the one
    # keep-alive comes 0.2 s after `b` (0.15 + 0.2), and no other before `c` at 0.5.
    assert len(keepalives) == 1
    assert 0.34 <= keepalives[0] < 0.5


async def test_a_client_that_leaves_cancels_the_body() -> None:
    closed = asyncio.Event()
    task = asyncio.create_task(_run(SSEResponse(_one_frame_then_silence(closed), keepalive=0)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()


@pytest.mark.parametrize("text", ["The", ' "quoted" \\ and\nnewline', "café ✓", ""])
def test_the_text_frame_is_the_encoded_seed_chunk(text: str) -> None:
    import orjson

    from backend.chat.sse import text_chunk, text_frame

    assert text_frame(text) == b"event: message\ndata: " + orjson.dumps(text_chunk(text)) + b"\n\n"


async def test_a_disconnect_message_ends_the_response_and_closes_the_body() -> None:
    closed = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"spec_version": "2.3"}}
    response = SSEResponse(_one_frame_then_silence(closed), keepalive=0)
    await asyncio.wait_for(response(scope, receive, send), 2)
    assert closed.is_set()
    assert [m["body"] for m in sent if m["type"] == "http.response.body"] == [b"data: a\n\n"]
