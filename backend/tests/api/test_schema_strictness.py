"""The OpenAPI document says what the server checks: strict types, documented statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.tests.support import make_settings, run_app

DEMO = "00000000-0000-4000-8000-000000000001"
ADMIN = "admin-token-for-the-schema-tests"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The real app with the admin endpoints on."""
    settings = make_settings(
        tmp_path, admin_token=ADMIN, rate_limit_requests=10_000, max_message_chars=5_000,
        max_history_messages=3,
    )
    async with run_app(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield http


def _v1(**extra: Any) -> dict[str, Any]:
    return {"model": DEMO, "messages": [{"role": "user", "content": "Hi"}], **extra}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"stream_options": {"include_usage": 0}}, "stream_options.include_usage"),
        ({"stream_options": {"include_usage": "true"}}, "stream_options.include_usage"),
        ({"stream": 1}, "stream"),
        ({"stream": "false"}, "stream"),
        ({"n": "1"}, "n"),
        ({"n": 1.0}, "n"),
        ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
    ],
)
async def test_v1_refuses_values_the_schema_forbids(
    client: httpx.AsyncClient, extra: dict[str, Any], param: str
) -> None:
    """No coercion on /v1: a number or string where the schema says boolean is a 400."""
    response = await client.post("/v1/chat/completions", json=_v1(**extra))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is not None and error["param"].startswith(param)


async def test_v1_still_takes_the_types_the_schema_names(client: httpx.AsyncClient) -> None:
    """Booleans and integers as JSON has them keep working (and unknown extras are ignored)."""
    body = _v1(stream=False, n=1, stream_options={"include_usage": True}, temperature=0.2)
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    "body",
    [
        {"specialist_id": DEMO, "message": 42},
        {"specialist_id": 1, "message": "hi"},
        {"specialist_id": DEMO, "message": "hi", "conversation_history": [
            {"role": "user", "content": 3}]},
        {"specialist_id": DEMO, "message": "hi", "conversation_history": {"role": "user"}},
    ],
)
async def test_chat_refuses_values_the_schema_forbids(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    """/chat takes only strings where the schema says string: a number is a 422."""
    response = await client.post("/chat/send", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("path", ["/usage/summary", "/usage/export"])
@pytest.mark.parametrize(
    ("query", "status"),
    [
        # A bare number is not an ISO 8601 date-time, and `from` must come before `to`.
        ({"to": "0.5"}, 422),
        ({"from": "1700000000"}, 422),
        ({"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, 422),
        ({"from": "2026-11-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, 422),
        # Valid bounds near year 1 or 9999 are clamped, never an overflow's 500.
        ({"to": "0001-01-05T00:00:00Z"}, 200),  # the default `from`, 30 days back, is year 0
        ({"from": "0001-01-01T00:00:00+05:00"}, 200),  # in UTC, still year 0
        ({"from": "2026-01-01T00:00:00Z", "to": "9999-12-31T23:00:00-05:00"}, 200),
        ({"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}, 200),
    ],
)
async def test_usage_range_rules(
    client: httpx.AsyncClient, path: str, query: dict[str, str], status: int
) -> None:
    """What the range parameters' documentation says, at its edges."""
    response = await client.get(path, params=query, headers=AUTH)
    assert response.status_code == status, response.text


async def test_usage_takes_a_forward_iso_range(client: httpx.AsyncClient) -> None:
    """The documented form: ISO 8601, with or without a zone (none means UTC)."""
    query = {"from": "2026-11-01T00:00:00", "to": "2026-11-08T00:00:00+01:00"}
    response = await client.get("/usage/summary", params=query, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["to"].startswith("2026-11-07T23:00:00")


async def test_the_document_lists_every_status_and_the_range_rule(
    client: httpx.AsyncClient,
) -> None:
    """Each route's `responses` name the statuses it can answer; the range rule is written."""
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/chat/send", "/chat/stream", "/v1/chat/completions"):
        documented = set(paths[path]["post"]["responses"])
        assert {"200", "400", "404", "408", "413", "415", "429", "502", "503", "504"} <= documented
    for path in ("/usage/summary", "/usage/export", "/usage/status"):
        assert {"200", "401", "404"} <= set(paths[path]["get"]["responses"]), path
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    request = schemas["ChatRequest"]["properties"]
    assert request["message"]["maxLength"] == 5_000
    assert request["conversation_history"]["maxItems"] == 3
    assert schemas["HistoryMessage"]["properties"]["content"]["maxLength"] == 5_000
    for path in ("/usage/summary", "/usage/export"):
        operation = paths[path]["get"]
        assert "422" in operation["responses"]
        described = {p["name"]: p.get("description", "") for p in operation["parameters"]}
        assert "before `to`" in described["from"] and "after `from`" in described["to"]



@pytest.mark.parametrize(
    "body",
    [
        {"specialist_id": DEMO, "message": "x" * 5_001},
        {"specialist_id": DEMO, "message": "hi",
         "conversation_history": [{"role": "user", "content": "x" * 5_001}]},
        {"specialist_id": DEMO, "message": "hi",
         "conversation_history": [{"role": "user", "content": "a"}] * 4},
    ],
)
async def test_the_documented_limits_are_the_enforced_ones(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    """One past the maxLength / maxItems the document states is a 413; at it, served."""
    response = await client.post("/chat/send", json=body)
    assert response.status_code == 413, response.text
    at_limit = {"specialist_id": DEMO, "message": "x" * 5_000,
                "conversation_history": [{"role": "user", "content": "a"}] * 3}
    assert (await client.post("/chat/send", json=at_limit)).status_code == 200
