"""IPv6 clients are keyed by their RATE_LIMIT_IPV6_PREFIX network, in memory and on Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.ratelimit.keys import client_key
from backend.tests.ratelimit.test_app import chat, portal


@pytest.mark.parametrize(
    ("client", "prefix", "key"),
    [
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"),
        ("203.0.113.7", 64, "203.0.113.7"),  # IPv4 (mapped ones arrive normalised to it)
        ("unknown", 64, "unknown"),  # a non-address hop is its own key
    ],
)
def test_client_key_widens_ipv6_to_its_network(client: str, prefix: int, key: str) -> None:
    assert client_key(client, prefix) == key


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings selecting each limiter backend (Redis: the real one, a prefix of its own)."""
    if request.param == "memory":
        return {"rate_limit_backend": "memory"}
    return {
        "rate_limit_backend": "redis",
        "redis_url": request.getfixturevalue("redis_url"),
        "rate_limit_redis_prefix": request.getfixturevalue("redis_prefix"),
    }


def via(address: str) -> dict[str, str]:
    return {"x-forwarded-for": address}


async def test_addresses_of_one_slash_64_share_one_bucket(
    tmp_path: Path, backend: dict[str, Any]
) -> None:
    settings = {"rate_limit_requests": 2, "trusted_proxies": ["127.0.0.1"], **backend}
    async with portal(tmp_path, **settings) as (client, _):
        same = [
            await client.post("/chat/send", json=chat(), headers=via(address))
            for address in ("2001:db8:1:2::1", "2001:db8:1:2::2", "[2001:db8:1:2:ffff::9]:443")
        ]
        other = await client.post("/chat/send", json=chat(), headers=via("2001:db8:1:3::1"))
        ipv4 = await client.post("/chat/send", json=chat(), headers=via("203.0.113.7"))
    assert [r.status_code for r in same] == [200, 200, 429]
    assert other.status_code == 200 and other.headers["x-ratelimit-remaining"] == "1"
    assert ipv4.status_code == 200


async def test_prefix_128_keys_each_ipv6_address_on_its_own(
    tmp_path: Path, backend: dict[str, Any]
) -> None:
    settings = {
        "rate_limit_requests": 1, "trusted_proxies": ["127.0.0.1"],
        "rate_limit_ipv6_prefix": 128, **backend,
    }
    async with portal(tmp_path, **settings) as (client, _):
        first = [
            await client.post("/chat/send", json=chat(), headers=via(f"2001:db8:1:2::{n}"))
            for n in range(1, 4)
        ]
        again = await client.post("/chat/send", json=chat(), headers=via("2001:db8:1:2::1"))
    assert [r.status_code for r in first] == [200, 200, 200]
    assert again.status_code == 429
