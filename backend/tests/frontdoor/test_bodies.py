"""Request bodies are bounded before they are held: size (413) and time (408).

The server runs as the README starts it, in its own process, so its memory can be read
from /proc and a stuck event loop would show in the other clients' waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from backend.tests.frontdoor.wire import Answer, exchange, peak_rss_kib
from backend.tests.ratelimit.servers import DEMO, server_env, uvicorn_processes
from backend.tests.support import make_settings, run_app

CAP = 100_000
TIMEOUT = 1.5
CHUNK = 64 * 1024


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """(base URL, pid) of one server with a small cap and a short body deadline."""
    env = server_env(
        tmp_path, "bodies", MAX_REQUEST_BYTES=str(CAP),
        BODY_READ_TIMEOUT_SECONDS=str(TIMEOUT), RATE_LIMIT_REQUESTS="1000",
    )
    async with uvicorn_processes([env]) as [(url, proc)]:
        yield url, proc.pid


def post_head(path: str, *, length: int | None) -> bytes:
    """A POST's request line and headers: a declared length, or chunked."""
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {path} HTTP/1.1\r\nHost: portal\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


def chunked(total: int) -> list[bytes]:
    """`total` bytes of a JSON-ish body in HTTP/1.1 chunks of 64 KiB."""
    piece = b"x" * CHUNK
    frame = b"%x\r\n" % CHUNK + piece + b"\r\n"
    return [frame] * (total // CHUNK)


async def oversized(url: str, path: str, multiple: int, *, declared: bool) -> Answer:
    """Send a body of `multiple` times the cap, declared up front or chunked."""
    total = multiple * CAP
    if declared:
        # The length is declared and the body never sent: a server that waits for it hangs.
        return await exchange(url, post_head(path, length=total))
    return await exchange(url, post_head(path, length=None), chunked(total))


async def test_oversized_bodies_are_refused_at_once_without_being_held(
    server: tuple[str, int],
) -> None:
    url, pid = server
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        ok = await client.post("/chat/send", json={"specialist_id": DEMO, "message": "hi"})
        assert ok.status_code == 200
    # Warm every code path up (imports, first responses) before the baseline is taken.
    for declared in (True, False):
        await oversized(url, "/chat/send", 2, declared=declared)
    baseline = peak_rss_kib(pid)

    for path in ("/chat/send", "/chat/stream", "/v1/chat/completions"):
        for multiple in (10, 1000):
            for declared in (True, False):
                answer = await oversized(url, path, multiple, declared=declared)
                case = f"{path} {multiple}x {'declared' if declared else 'chunked'}"
                assert answer.status == 413, case
                assert answer.seconds < 1.0, case
                assert answer.closed, case  # the rest of the body is never read
                body = orjson.loads(answer.body)
                code = body["error"]["code"] if path.startswith("/v1") else body["error"]
                assert code == "request_too_large", case
                assert b"x-request-id:" in answer.head.lower(), case
                # A refusal takes no rate-limit token, so it reports none either.
                assert b"x-ratelimit" not in answer.head.lower(), case
                if not declared and multiple == 1000:
                    # Refused as it arrived: the client could not push the 100 MB through
                    # (what it did write sits in the sockets' buffers, never in the server).
                    assert answer.sent < multiple * CAP / 5, case

    # 100 MB offered twice per endpoint: the server's peak memory barely moved.
    grown_mib = (peak_rss_kib(pid) - baseline) / 1024
    assert grown_mib < 8, f"peak RSS grew by {grown_mib:.1f} MiB"


async def test_a_body_under_the_cap_is_served(server: tuple[str, int]) -> None:
    url, _ = server
    # Chunked and within the cap: read in full, then refused by the character limit (413
    # from the chat service, not the front door) or answered.
    message = "y" * 20_000
    payload = orjson.dumps({"specialist_id": DEMO, "message": message})
    head = post_head("/chat/send", length=None)
    frames = [b"%x\r\n" % len(payload) + payload + b"\r\n", b"0\r\n\r\n"]
    answer = await exchange(url, head, frames)
    assert answer.status == 200
    assert orjson.loads(answer.body)["content"].startswith("[demo reply")
    # What a served request reports, and a refused one must not (below).
    assert b"x-ratelimit-remaining:" in answer.head.lower()


async def test_a_trickling_body_gets_408_while_others_are_served(
    server: tuple[str, int],
) -> None:
    url, _ = server
    # Declares 100 bytes, sends one every 0.25 s: it would take 25 s.
    trickle = asyncio.create_task(
        exchange(url, post_head("/chat/send", length=100), [b"{"] * 100, gap=0.25)
    )
    waits: list[float] = []
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while not trickle.done():
            started = time.monotonic()
            response = await client.post(
                "/chat/send", json={"specialist_id": DEMO, "message": "meanwhile"}
            )
            waits.append(time.monotonic() - started)
            statuses.append(response.status_code)
            await asyncio.sleep(0.1)
    answer = trickle.result()
    assert answer.status == 408
    assert TIMEOUT <= answer.seconds < TIMEOUT + 1.5
    assert answer.closed
    assert orjson.loads(answer.body)["error"] == "body_read_timeout"
    assert b"x-ratelimit" not in answer.head.lower()  # no token taken, none reported
    assert len(statuses) >= 5 and set(statuses) == {200}
    assert max(waits) < 1.0


def escaped_astral(count: int) -> bytes:
    """`count` astral characters (U+1F600) as a JSON string's content, each escaped as a
    surrogate pair: 12 bytes a character, the most JSON spends on one."""
    return b"\\ud83d\\ude00" * count


async def test_a_conversation_at_the_limits_fully_escaped_passes_the_default_cap(
    tmp_path: Path,
) -> None:
    """The default MAX_REQUEST_BYTES is sized so that no conversation the character limits
    allow is refused by the front door, however its client escapes it."""
    settings = make_settings(tmp_path)
    assert settings.max_request_bytes is None  # the default cap, sized from the limits
    limit_chars, history = settings.max_total_chars, settings.max_history_messages
    message_chars = settings.max_message_chars
    per_turn, rest = divmod(limit_chars - message_chars, history)
    turns = [
        b'{"role":"%s","content":"%s"}' % (
            b"user" if i % 2 == 0 else b"assistant",
            escaped_astral(per_turn + (1 if i < rest else 0)),
        )
        for i in range(history)
    ]
    body = (
        b'{"specialist_id":"' + DEMO.encode() + b'","message":"' + escaped_astral(message_chars)
        + b'","conversation_history":[' + b",".join(turns) + b"]}"
    )
    text = orjson.loads(body)
    chars = len(text["message"]) + sum(len(t["content"]) for t in text["conversation_history"])
    assert chars == limit_chars and len(text["conversation_history"]) == history
    assert len(body) > 12 * limit_chars  # the worst case, within its 64 KiB of headroom
    async with run_app(settings) as url, httpx.AsyncClient(base_url=url, timeout=60) as client:
        response = await client.post(
            "/chat/send", content=body, headers={"Content-Type": "application/json"}
        )
        over = await client.post(  # one character more: the chat service's own 413
            "/chat/send", content=body.replace(b'"message":"', b'"message":"a', 1),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 200, response.text[:300]
    assert response.json()["content"].startswith("[demo reply")
    assert over.status_code == 413
