"""A chat request that is not JSON is refused with 415 before it takes a rate-limit token.

A web page can POST `text/plain` or a form to any origin with no CORS preflight; answered
422 only after the token was taken, such posts from any site drained a user's limit.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from backend.tests.chat.conftest import SPECIALISTS, Portal

DEMO = SPECIALISTS["demo"]
BODY = orjson.dumps({"specialist_id": DEMO, "message": "hello"})


@pytest.mark.parametrize("path", ["/chat/send", "/chat/stream", "/v1/chat/completions"])
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
     "multipart/form-data; boundary=x", None],
)
async def test_non_json_chat_requests_get_415_and_take_no_token(
    portal_factory: Any, path: str, content_type: str | None
) -> None:
    portal: Portal = await portal_factory(rate_limit_requests=2)
    # None: no Content-Type at all (FastAPI never parsed such a body as JSON either).
    headers = {"content-type": content_type} if content_type else {}
    body = BODY if not path.startswith("/v1") else orjson.dumps(
        {"model": DEMO, "messages": [{"role": "user", "content": "hello"}]}
    )
    for _ in range(5):  # more than the bucket holds
        refused = await portal.client.post(
            path, content=body, headers=headers
        )
        assert refused.status_code == 415
        payload = refused.json()
        code = payload["error"]["code"] if path.startswith("/v1") else payload["error"]
        assert code == "unsupported_media_type"
        assert "x-ratelimit-remaining" not in refused.headers
    # The bucket is still full: both of its tokens serve real requests.
    for remaining in ("1", "0"):
        ok = await portal.client.post(
            path, content=body, headers={"content-type": "application/json"}
        )
        assert ok.status_code == 200
        assert ok.headers["x-ratelimit-remaining"] == remaining


async def test_json_media_types_are_accepted(portal: Portal) -> None:
    for headers in (
        {"content-type": "application/json; charset=utf-8"},
        {"content-type": "Application/JSON"},
        {"content-type": "application/vnd.portal+json"},
    ):
        response = await portal.client.post("/chat/send", content=BODY, headers=headers)
        assert response.status_code == 200, headers
