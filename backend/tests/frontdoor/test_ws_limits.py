"""What one client can make the WebSocket endpoint hold: sockets, idle time, message bytes.

Before these bounds, 6 connections each queueing 8 messages of 16 MiB took the process
from 106 MiB to 945 MiB, and one client could hold 19,980 idle sockets.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from backend.main import create_app
from backend.tests.chat.conftest import SPECIALISTS
from backend.tests.fakes import openai_fake
from backend.tests.fakes.script import Script
from backend.tests.frontdoor.wire import rss_kib
from backend.tests.ratelimit.servers import server_env, uvicorn_processes
from backend.tests.support import make_settings
from backend.tests.transports.conftest import Portal, answer, ws_url

DEMO = SPECIALISTS["demo"]


def chat(message: str = "Hello", specialist: str = DEMO) -> str:
    """A chat request as a WebSocket text message."""
    return orjson.dumps({"specialist_id": specialist, "message": message}).decode()


async def test_a_client_holds_at_most_its_cap_of_sockets(portal_factory: Any) -> None:
    portal: Portal = await portal_factory(ws_max_connections_per_client=3)
    first, second, third = [await connect(ws_url(portal)) for _ in range(3)]
    try:
        with pytest.raises(InvalidStatus) as refused:
            await connect(ws_url(portal))
        assert refused.value.response.status_code == 403
        await first.close()
        await asyncio.sleep(0.1)  # the server sees the close and frees the slot
        fourth = await connect(ws_url(portal))
        await fourth.send(chat())
        _, final = await answer(fourth)
        assert final["is_final"] is True
        await fourth.close()
    finally:
        for ws in (first, second, third):
            await ws.close()


async def test_an_idle_socket_is_closed_and_a_busy_one_is_not(portal_factory: Any) -> None:
    portal: Portal = await portal_factory(ws_idle_timeout_seconds=0.5)
    async with connect(ws_url(portal)) as idle, connect(ws_url(portal)) as busy:
        started = time.monotonic()
        # The busy client sends every 0.3 s, for longer than the idle bound.
        for _ in range(5):
            await busy.send(chat())
            _, final = await answer(busy)
            assert final["is_final"] is True
            await asyncio.sleep(0.3)
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(5):
                await idle.recv()
        assert idle.close_code == 1000 and idle.close_reason == "idle timeout"
        assert busy.close_code is None
        assert time.monotonic() - started > 1.0


async def test_a_message_over_the_cap_closes_the_socket_with_1009(portal_factory: Any) -> None:
    portal: Portal = await portal_factory(max_request_bytes=4096)
    async with connect(ws_url(portal), max_size=None) as ws:
        await ws.send(chat("a" * 3000))  # under the byte cap (and the character limit)
        _, final = await answer(ws)
        assert final["is_final"] is True
        await ws.send(chat("b" * 5000))
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(5):
                await ws.recv()
    assert ws.close_code == 1009


def test_the_app_closes_with_1009_on_a_server_it_cannot_tune(tmp_path: Path) -> None:
    # Starlette's test client is no uvicorn: nothing bounded the message before the app.
    app = create_app(make_settings(tmp_path, max_request_bytes=2048))
    with TestClient(app) as client, client.websocket_connect("/chat/ws") as ws:
        ws.send_text(chat("é" * 1500))  # 1,500 characters, 3,000 bytes of UTF-8
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1009


async def fill(url: str, size: int, messages: int) -> ClientConnection:
    """A socket whose first message hangs upstream, then `messages` more of `size` bytes."""
    ws = await connect(url, max_size=None, compression=None)
    await ws.send(chat("wait", SPECIALISTS["openai"]))
    padding = "x" * max(0, size - len(chat("", SPECIALISTS["openai"])))
    try:
        for _ in range(messages):
            await ws.send(chat(padding, SPECIALISTS["openai"]))
    except ConnectionClosed:
        pass  # an oversized message closed the socket
    return ws


async def drain(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every message the server still sends, until it has been quiet for half a second."""
    received = []
    try:
        while True:
            async with asyncio.timeout(0.5):
                received.append(orjson.loads(await ws.recv()))
    except (TimeoutError, ConnectionClosed):
        pass
    await ws.close()
    return received


@pytest.fixture
async def hung_portal(tmp_path: Path) -> Any:
    """A portal process whose one specialist's upstream never answers; yields a factory
    taking extra settings, giving (WebSocket URL, pid)."""
    async with openai_fake.start(Script(first_byte_delay=60)) as (upstream, _state):
        specialists = tmp_path / "specialists.yaml"
        specialists.write_text(yaml.safe_dump({"specialists": [{
            "id": SPECIALISTS["openai"], "name": "slow", "provider": "openai",
            "model": "gpt-4o", "system_prompt": "You are slow.",
        }]}))

        def env(**extra: str) -> dict[str, str]:
            return server_env(
                tmp_path, "ws-memory", OPENAI_BASE_URL=upstream,
                OPENAI_API_KEY=openai_fake.API_KEY, SPECIALISTS_FILE=str(specialists),
                WS_MAX_CONNECTIONS_PER_CLIENT="100", RATE_LIMIT_REQUESTS="10000", **extra,
            )

        yield env


async def test_oversized_messages_close_sockets_before_they_are_held(hung_portal: Any) -> None:
    connections = 20
    async with uvicorn_processes([hung_portal()]) as [(url, proc)]:
        socket_url = url.replace("http://", "ws://", 1) + "/chat/ws"
        await drain(await fill(socket_url, 1000, 1))  # warm up
        before = rss_kib(proc.pid)
        # 8 messages of 16 MiB each per socket: what uvicorn used to accept and queue.
        sockets = await asyncio.gather(
            *(fill(socket_url, 16 * 2**20, 8) for _ in range(connections))
        )
        await asyncio.sleep(1.0)
        grown_mib = (rss_kib(proc.pid) - before) / 1024
        for ws in sockets:
            await drain(ws)
    assert {ws.close_code for ws in sockets} <= {1009, 1006}
    assert 1009 in {ws.close_code for ws in sockets}
    # The size is in the frame header: the server refuses before reading the payload.
    assert grown_mib / connections < 1.0, f"{grown_mib / connections:.2f} MiB per socket"


async def test_queued_messages_are_bounded_in_bytes_per_socket(hung_portal: Any) -> None:
    connections, cap, size = 30, 262_144, 200_000
    async with uvicorn_processes([hung_portal(MAX_REQUEST_BYTES=str(cap))]) as [(url, proc)]:
        socket_url = url.replace("http://", "ws://", 1) + "/chat/ws"
        await drain(await fill(socket_url, size, 2))  # warm up
        before = rss_kib(proc.pid)
        sockets = await asyncio.gather(*(fill(socket_url, size, 16) for _ in range(connections)))
        await asyncio.sleep(1.0)  # every message read, queued or refused
        grown_mib = (rss_kib(proc.pid) - before) / 1024
        answers = [await drain(ws) for ws in sockets]
    # One 200 KB message fits the 256 KiB pending-bytes cap behind the hung answer; the
    # other 15 are refused at once (before: 8 queued, 1.6 MB a socket, unparsed).
    refusals = [
        sum(m.get("error") == "too_many_pending_messages" for m in got) for got in answers
    ]
    assert refusals == [15] * connections
    per_socket = grown_mib / connections
    # By configuration a socket holds its queue and one message being read (each at most
    # MAX_REQUEST_BYTES); what is measured beyond that is allocator slack.
    assert per_socket < 4 * cap / 2**20 + 0.5, f"{per_socket:.2f} MiB per socket"
