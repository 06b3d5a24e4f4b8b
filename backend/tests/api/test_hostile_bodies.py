"""Bodies built to break a parser (deep nesting, invalid UTF-8) get a JSON 4xx, never a 500.

Every operation of the OpenAPI document that takes a body (POST and PUT) is tried, with the
admin token so that the admin routes read their bodies too, so endpoints added later
inherit the test; with per-specialist limits the rate limiter reads the body too, before
FastAPI.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from backend.tests.support import make_settings, run_app

DEMO = "00000000-0000-4000-8000-000000000001"
DEPTH = 100_000
ADMIN_TOKEN = "hostile-bodies-admin-token-0123456789"
# Path parameters a route accepts, so that its body is what is refused.
PATH_VALUES = {"specialist_id": DEMO, "number": "1", "scope": "user", "name": "a@example.com"}

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
    overrides: dict[str, Any] = {"rate_limit_requests": 10_000, "admin_token": ADMIN_TOKEN}
    if request.param == "per-specialist limits":
        overrides["rate_limit_specialists"] = {DEMO: {"requests": 10_000}}
    async with (
        run_app(make_settings(tmp_path, **overrides)) as url,
        httpx.AsyncClient(
            base_url=url, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as http,
    ):
        yield http


async def _operations_with_bodies(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    document = (await client.get("/openapi.json")).json()
    return sorted(
        (method.upper(), re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("post", "put", "patch") and "requestBody" in operation
    )


async def test_every_endpoint_with_a_body_answers_hostile_bodies_with_a_json_4xx(
    client: httpx.AsyncClient,
) -> None:
    """Each hostile body, on each route taking one: a JSON 4xx, never a 5xx."""
    operations = await _operations_with_bodies(client)
    assert {("POST", "/chat/send"), ("POST", "/keys"), ("POST", "/admin/specialists"),
            ("PUT", "/admin/budgets/user/a@example.com")} <= set(operations)
    for method, path in operations:
        for name, raw in HOSTILE.items():
            response = await client.request(
                method, path, content=raw, headers={"Content-Type": "application/json"}
            )
            case = (method, path, name, response.status_code)
            assert 400 <= response.status_code < 500, case
            assert response.headers["content-type"].startswith("application/json"), case
            error = orjson.loads(response.content)["error"]
            assert error, case
            # The route was there, and let in, to read the body: neither absent nor locked.
            assert error not in ("http_404", "unauthorized"), case
    # The server is still serving after all of them.
    health = await client.get("/health")
    assert health.status_code == 200
