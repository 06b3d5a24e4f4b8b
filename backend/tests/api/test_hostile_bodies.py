"""Bodies built to break a parser (deep nesting, invalid UTF-8) get a JSON 4xx, never a 500.

Every POST operation of the OpenAPI document is tried, so endpoints added later inherit
the test; with per-specialist limits the rate limiter reads the body too, before FastAPI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from backend.tests.support import make_settings, run_app

DEMO = "00000000-0000-4000-8000-000000000001"
DEPTH = 100_000

HOSTILE: dict[str, bytes] = {
    "nested arrays": b"[" * DEPTH + b"]" * DEPTH,
    "nested objects": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
    "nested in a field": (
        b'{"specialist_id":"' + DEMO.encode() + b'","model":"' + DEMO.encode()
        + b'","message":' + b"[" * DEPTH + b"]" * DEPTH + b"}"
    ),
    "invalid UTF-8 in a string": (
        b'{"specialist_id":"' + DEMO.encode() + b'","model":"' + DEMO.encode()
        + b'","message":"caf\xc3","messages":[{"role":"user","content":"\xff\xfe"}]}'
    ),
    "a lone surrogate escape": (
        b'{"specialist_id":"' + DEMO.encode() + b'","message":"\\ud800",'
        b'"model":"' + DEMO.encode() + b'","messages":[{"role":"user","content":"\\udfff"}]}'
    ),
    "a lone surrogate in the history": (
        b'{"specialist_id":"' + DEMO.encode() + b'","message":"hi",'
        b'"conversation_history":[{"role":"user","content":"\\ud800"}]}'
    ),
    "UTF-16 bytes": '{"specialist_id": "x", "message": "hi"}'.encode("utf-16"),
}


@pytest.fixture(params=["general limits", "per-specialist limits"])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app; with a per-specialist limit the limiter parses the body first."""
    overrides: dict[str, Any] = {"rate_limit_requests": 10_000}
    if request.param == "per-specialist limits":
        overrides["rate_limit_specialists"] = {DEMO: {"requests": 10_000}}
    async with (
        run_app(make_settings(tmp_path, **overrides)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


async def _post_paths(client: httpx.AsyncClient) -> list[str]:
    document = (await client.get("/openapi.json")).json()
    return sorted(path for path, item in document["paths"].items() if "post" in item)


async def test_every_post_endpoint_answers_hostile_bodies_with_a_json_4xx(
    client: httpx.AsyncClient,
) -> None:
    """Each hostile body, on each POST route: a 4xx with a JSON error body, never a 5xx."""
    paths = await _post_paths(client)
    assert {"/chat/send", "/chat/stream", "/v1/chat/completions"} <= set(paths)
    for path in paths:
        for name, raw in HOSTILE.items():
            response = await client.post(
                path, content=raw, headers={"Content-Type": "application/json"}
            )
            assert 400 <= response.status_code < 500, (path, name, response.status_code)
            assert response.headers["content-type"].startswith("application/json"), (path, name)
            error = orjson.loads(response.content)["error"]
            assert error, (path, name)
    # The server is still serving after all of them.
    health = await client.get("/health")
    assert health.status_code == 200
