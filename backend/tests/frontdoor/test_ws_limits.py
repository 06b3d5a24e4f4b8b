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
    ws = await connect(url, max_size=None)
    await ws.send(chat("wait", SPECIALISTS["openai"]))
    padding = "x" * (size - len(chat("", SPECIALISTS["openai"])))
    for _ in range(messages):
        await ws.send(chat(padding, SPECIALISTS["openai"]))
    return ws


async def test_many_sockets_queueing_big_messages_stay_within_the_caps(tmp_path: Path) -> None:
    connections, size = 12, 2_000_000  # each message just under the default cap (2.47 MB)
    cap_mib = make_settings(tmp_path).request_byte_cap() / 2**20
    async with openai_fake.start(Script(first_byte_delay=60)) as (upstream, _state):
        specialists = tmp_path / "specialists.yaml"
        specialists.write_text(yaml.safe_dump({"specialists": [{
            "id": SPECIALISTS["openai"], "name": "slow", "provider": "openai",
            "model": "gpt-4o", "system_prompt": "You are slow.",
        }]}))
        env = server_env(
            tmp_path, "ws-memory", OPENAI_BASE_URL=upstream, OPENAI_API_KEY=openai_fake.API_KEY,
            SPECIALISTS_FILE=str(specialists), WS_MAX_CONNECTIONS_PER_CLIENT="100",
            RATE_LIMIT_REQUESTS="10000",
        )
        async with uvicorn_processes([env]) as [(url, proc)]:
            socket_url = url.replace("http://", "ws://", 1) + "/chat/ws"
            warm = await fill(socket_url, size, 1)
            await asyncio.sleep(0.5)
            before = rss_kib(proc.pid)
            sockets = await asyncio.gather(
                *(fill(socket_url, size, 8) for _ in range(connections))
            )
            await asyncio.sleep(1.0)  # every message read, queued or refused
            grown_mib = (rss_kib(proc.pid) - before) / 1024
            refusals = 0
            for ws in sockets:
                while True:
                    try:
                        async with asyncio.timeout(0.5):
                            message = orjson.loads(await ws.recv())
                    except TimeoutError:
                        break
                    refusals += message.get("error") == "too_many_pending_messages"
                await ws.close()
            await warm.close()
    # Per socket: one message queued behind the hung answer (the pending-bytes cap), the
    # rest refused at once. What a socket may hold by configuration is that queue plus the
    # server's frame buffer (each at most MAX_REQUEST_BYTES); beyond it, only allocator
    # slack from the refused messages. Before: 8 queued x 2 MB, plus 16 MiB frames.
    assert refusals >= connections * 6
    per_socket = grown_mib / connections
    assert per_socket < 2 * cap_mib + 6, f"{per_socket:.1f} MiB per socket"
