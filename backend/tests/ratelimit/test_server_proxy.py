"""The service started as the README says: a spoofed X-Forwarded-For never picks the key.

uvicorn trusts X-Forwarded-For from 127.0.0.1 by default and would rewrite the client
address before the app sees it; these tests run the real command in a subprocess and send
the header from 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from backend.tests.ratelimit.servers import DEMO, server_env, uvicorn_servers

BODY = {"specialist_id": DEMO, "message": "hello"}


async def send_as(client: httpx.AsyncClient, url: str, forwarded: str) -> httpx.Response:
    return await client.post(f"{url}/chat/send", json=BODY, headers={"x-forwarded-for": forwarded})


async def test_a_local_client_cannot_choose_its_key_with_x_forwarded_for(
    tmp_path: Path,
) -> None:
    env = {"RATE_LIMIT_REQUESTS": "2", "TRUSTED_PROXIES": "[]"}
    envs = [server_env(tmp_path, name, **env) for name in ("readme", "trust-all")]
    # As the README starts it (uvicorn trusts 127.0.0.1), and with uvicorn trusting everyone.
    args = [(), ("--forwarded-allow-ips", "*")]
    async with uvicorn_servers(envs, args) as urls, httpx.AsyncClient(timeout=10) as client:
        for url in urls:
            responses = [
                await send_as(client, url, spoof)
                for spoof in ("203.0.113.1", "203.0.113.2", "198.51.100.7, 203.0.113.3")
            ]
            # One bucket (the socket peer's), whatever the header said.
            assert [r.status_code for r in responses] == [200, 200, 429]
            assert [r.headers["x-ratelimit-remaining"] for r in responses] == ["1", "0", "0"]


async def test_trusted_proxies_are_applied_by_the_app_itself(tmp_path: Path) -> None:
    env = server_env(tmp_path, "proxy", RATE_LIMIT_REQUESTS="1", TRUSTED_PROXIES='["127.0.0.1"]')
    async with uvicorn_servers([env]) as [url], httpx.AsyncClient(timeout=10) as client:
        first = await send_as(client, url, "203.0.113.1")
        other_client = await send_as(client, url, "203.0.113.2")
        # A client behind the proxy prepends a spoof: the right-most hop still names it.
        spoofing = await send_as(client, url, "203.0.113.2, 203.0.113.1")
    assert (first.status_code, other_client.status_code) == (200, 200)
    assert spoofing.status_code == 429
