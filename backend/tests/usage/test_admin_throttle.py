"""Failed admin authentications are throttled per client and logged without the guess."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from backend.tests.usage.helpers import ADMIN_TOKEN
from backend.tests.usage.portal import running_portal

GUESS = "Bearer guess-0123456789abcdef"


def bearer(token: str, client: str) -> dict[str, str]:
    return {"authorization": token, "x-forwarded-for": client}


async def test_after_n_failures_a_client_gets_429_even_with_the_right_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {
        "admin_auth_max_failures": 3, "admin_auth_window_seconds": 2.0,
        "trusted_proxies": ["127.0.0.1"],
    }
    right = f"Bearer {ADMIN_TOKEN}"
    async with running_portal(tmp_path, f"sqlite:///{tmp_path / 'usage.db'}", **settings) as p:
        with caplog.at_level(logging.WARNING, logger="backend.api.deps"):
            wrong = [
                await p.client.get("/usage/status", headers=bearer(GUESS, "203.0.113.7"))
                for _ in range(4)
            ]
            throttled_right = await p.client.get(
                "/usage/summary", headers=bearer(right, "203.0.113.7")
            )
            # Another client is not affected, and an IPv6 client is throttled per /64.
            other = await p.client.get("/usage/status", headers=bearer(right, "198.51.100.1"))
            for n in range(3):
                await p.client.get("/usage/status", headers=bearer(GUESS, f"2001:db8::{n}"))
            sibling = await p.client.get("/usage/status", headers=bearer(right, "2001:db8::99"))
        await asyncio.sleep(2.1)  # the window passes
        later = await p.client.get("/usage/status", headers=bearer(right, "203.0.113.7"))

    assert [r.status_code for r in wrong] == [401, 401, 401, 429]
    assert throttled_right.status_code == 429
    body = throttled_right.json()
    assert body["error"] == "auth_throttled" and "retry in" in body["message"]
    assert 1 <= int(throttled_right.headers["retry-after"]) <= 2
    assert other.status_code == 200 and sibling.status_code == 429
    assert later.status_code == 200
    failures = [r.getMessage() for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(failures) == 6  # each failure, none of the throttled requests
    assert "203.0.113.7" in failures[0] and "(1 of 3 in 2 s)" in failures[0]
    assert "2001:db8::/64" in failures[-1]
    assert not any("guess" in record.getMessage() for record in caplog.records)
