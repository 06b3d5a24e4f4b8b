"""LOG_FORMAT=json: every line parses, carries the request id of the request that caused
it, each request has one access line, and no key, token or email appears anywhere."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from backend.observability.logs import configure_logging
from backend.tests.chat.conftest import SPECIALISTS
from backend.tests.fakes import anthropic_fake, google_fake, openai_fake
from backend.tests.fakes.script import Script
from backend.tests.observability.conftest import Portal
from backend.tests.transports.conftest import answer, ws_url

METRICS_TOKEN = "metrics-token-abcdefghijkl"
ADMIN_TOKEN = "admin-token-abcdefghijklmn"
EMAIL = "alice.secret@example.com"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Where the JSON handler writes during the test; text logging is restored after."""
    buffer = io.StringIO()
    client_log = logging.getLogger("httpx")  # the test's own client, not the portal
    level = client_log.level
    client_log.setLevel(logging.WARNING)
    yield buffer
    client_log.setLevel(level)
    configure_logging("INFO", "text")


def point_at(buffer: io.StringIO) -> None:
    """Send the JSON handler create_app installed to `buffer`."""
    (handler,) = [h for h in logging.getLogger().handlers if h.get_name() == "portal-json"]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)


def parse(buffer: io.StringIO) -> list[dict[str, Any]]:
    """Every line, each one JSON object with the four base fields."""
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    for line in lines:
        assert {"timestamp", "level", "logger", "message"} <= line.keys(), line
        assert line["timestamp"].endswith("Z")
    return lines


async def test_json_lines_carry_request_ids_and_one_access_line_each(
    portal_factory: Any, json_lines: io.StringIO,
) -> None:
    portal: Portal = await portal_factory(
        log_format="json", metrics_token=METRICS_TOKEN, admin_token=ADMIN_TOKEN,
        retry_max_attempts=1,
    )
    point_at(json_lines)
    headers = {"X-User-Email": EMAIL}
    body = {"specialist_id": SPECIALISTS["openai"], "message": "hi"}
    ok = await portal.client.post("/chat/send?api_key=query-secret", json=body, headers=headers)
    async with aconnect_sse(portal.client, "POST", "/chat/stream", json=body) as source:
        _ = [event async for event in source.aiter_sse()]
        streamed = source.response.headers["x-request-id"]
    portal.fakes["openai"].script = Script(error_status=500)
    failed = await portal.client.post("/chat/send", json=body, headers=headers)
    assert failed.status_code == 503
    denied = await portal.client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert denied.status_code == 401
    async with connect(ws_url(portal)) as ws:
        await ws.send(orjson.dumps(body).decode())
        _, error = await answer(ws)
        assert error["type"] == "error"

    lines = parse(json_lines)
    access = {line["request_id"]: line for line in lines if line["logger"] == "backend.access"}
    for response, transport in ((ok, "send"), (failed, "send"), (denied, "http")):
        line = access[response.headers["x-request-id"]]
        assert (line["method"], line["status"], line["transport"]) == (
            response.request.method, response.status_code, transport,
        )
        assert line["duration_ms"] > 0
    assert access[ok.headers["x-request-id"]]["path"] == "/chat/send"  # no query string
    assert access[streamed]["transport"] == "stream" and access[streamed]["status"] == 200
    assert [line["status"] for line in access.values() if line["transport"] == "ws"] == [101]
    assert len([line for line in lines if line["logger"] == "backend.access"]) == 5
    # The upstream failure's warning names the request that caused it.
    (warning,) = [line for line in lines if "upstream failure" in line["message"]]
    assert warning["request_id"] == failed.headers["x-request-id"]
    assert warning["level"] == "WARNING"
    # The retry layer's lines too, the WebSocket message's with that message's own id.
    runner = "backend.resilience.runner"
    retried = [line["request_id"] for line in lines if line["logger"] == runner]
    assert sorted(retried) == sorted([failed.headers["x-request-id"], error["request_id"]])
    text = json_lines.getvalue()
    for secret in (
        METRICS_TOKEN, ADMIN_TOKEN, EMAIL, "query-secret", openai_fake.API_KEY,
        anthropic_fake.API_KEY, google_fake.API_KEY, "test-secret",
    ):
        assert secret not in text


async def test_text_stays_the_default(portal: Portal, json_lines: io.StringIO) -> None:
    assert portal.settings.log_format == "text"
    assert not [h for h in logging.getLogger().handlers if h.get_name() == "portal-json"]
    assert (await portal.client.get("/health")).status_code == 200
