"""Upstream and client text cannot forge a log line: control characters are escaped."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from httpx_sse import aconnect_sse

from backend.tests.chat.conftest import SPECIALISTS
from backend.tests.fakes.script import Script

# What a hostile upstream (any OpenAI-compatible server, a proxy) can put in its 400 body.
FORGED = (
    "bad request\n"
    'INFO:     127.0.0.1:4711 - "GET /usage/export HTTP/1.1" 200 OK\r\n'
    "WARNING:backend:admin token accepted\x85next\u2028line\x1b[2K\x00"
)
BREAKS = ("\n", "\r", "\x85", "\u2028", "\u2029", "\x1b", "\x00")


def _assert_one_line_each(records: list[logging.LogRecord]) -> None:
    assert records, "the failure was not logged at all"
    for record in records:
        message = record.getMessage()
        assert not any(ch in message for ch in BREAKS), repr(message)


async def test_a_crafted_upstream_400_cannot_write_a_log_line_of_its_own(
    portal: Any, caplog: pytest.LogCaptureFixture
) -> None:
    portal.fakes["openai"].script = Script(error_status=400, error_message=FORGED)
    body = {"specialist_id": SPECIALISTS["openai"], "message": "hi"}
    with caplog.at_level(logging.DEBUG):
        response = await portal.client.post("/chat/send", json=body)
        async with aconnect_sse(
            portal.client, "POST", "/chat/stream", json=body
        ) as source:
            streamed = source.response.status_code, (await source.response.aread()).decode()
    assert response.status_code == 502
    message = response.json()["message"]
    assert "admin token accepted" in message  # the text is kept, escaped, not dropped
    assert not any(ch in message for ch in BREAKS) and "\\n" in message
    assert streamed[0] == 502 and "\\n" in streamed[1] and "\n INFO" not in streamed[1]
    upstream = [r for r in caplog.records if "upstream failure" in r.getMessage()]
    assert len(upstream) == 2
    _assert_one_line_each(caplog.records)
