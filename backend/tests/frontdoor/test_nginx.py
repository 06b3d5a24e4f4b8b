"""The README's nginx configuration, run as written in front of the portal.

The block between the README's `nginx-snippet` marker and the end of its code fence is the
configuration under test; only its two addresses are replaced. Skipped when nginx is not
installed, except in CI (`.ci/run` installs it), where it must run.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from backend.tests.frontdoor.wire import exchange
from backend.tests.ratelimit.servers import DEMO, ROOT, free_port, server_env, uvicorn_servers
from backend.tests.support import IN_CI

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def readme_snippet() -> str:
    """The nginx block the README documents."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- nginx-snippet.*?-->\n```nginx\n(.*?)```", text, flags=re.DOTALL)
    assert match, "the README's nginx snippet is missing"
    return match.group(1)


def configuration(tmp: Path, *, listen: int, upstream: str) -> Path:
    """A whole nginx.conf around the README's block, everything under `tmp`."""
    snippet = readme_snippet()
    assert "listen 80;" in snippet and "server 127.0.0.1:8000;" in snippet
    snippet = snippet.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    snippet = snippet.replace("server 127.0.0.1:8000;", f"server {upstream};")
    temp = {name: tmp / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"pid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} info;\n"
        "daemon off;\nworker_processes 1;\nevents { worker_connections 256; }\n"
        "http {\n"
        f"  access_log off;\n  client_body_temp_path {temp['body']};\n"
        f"  proxy_temp_path {temp['proxy']};\n  fastcgi_temp_path {temp['fastcgi']};\n"
        f"  uwsgi_temp_path {temp['uwsgi']};\n  scgi_temp_path {temp['scgi']};\n"
        f"{snippet}}}\n"
    )
    return conf


@pytest.fixture
def nginx_binary() -> str:
    """nginx's path; skips without it, except in CI."""
    if NGINX is None:
        if IN_CI:
            pytest.fail("nginx is required in CI (.ci/run installs nginx-light)")
        pytest.skip("nginx is not installed")
    return NGINX


@pytest.fixture
async def proxied(nginx_binary: str, tmp_path: Path) -> AsyncIterator[str]:
    """The portal (README command) behind the README's nginx; yields nginx's base URL."""
    env = server_env(
        tmp_path, "behind-nginx", TRUSTED_PROXIES='["127.0.0.1/32"]', RATE_LIMIT_REQUESTS="2"
    )
    async with uvicorn_servers([env]) as [portal]:
        listen = free_port()
        conf = configuration(tmp_path, listen=listen, upstream=portal.removeprefix("http://"))
        with _running(nginx_binary, conf, tmp_path):
            url = f"http://127.0.0.1:{listen}"
            await _wait(url)
            yield url


class _running:
    """nginx in the foreground for the duration of a `with`."""

    def __init__(self, binary: str, conf: Path, prefix: Path) -> None:
        self.args = [binary, "-p", str(prefix), "-c", str(conf)]

    def __enter__(self) -> None:
        check = subprocess.run([*self.args, "-t"], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen(self.args, stderr=subprocess.DEVNULL)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


async def _wait(url: str) -> None:
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("nginx did not come up")


async def test_chat_streams_and_websockets_pass_through_the_readme_nginx(proxied: str) -> None:
    body = {"specialist_id": DEMO, "message": "Hello"}
    async with httpx.AsyncClient(base_url=proxied, timeout=10) as client:  # 2 of 2 tokens
        async with aconnect_sse(client, "POST", "/chat/stream", json=body) as source:
            events = [event async for event in source.aiter_sse()]
    assert source.response.headers["x-request-id"]
    assert len(events) > 2 and orjson.loads(events[-1].data)["is_final"] is True
    socket_url = proxied.replace("http://", "ws://", 1) + "/chat/ws"
    async with connect(socket_url) as ws:
        await ws.send(orjson.dumps(body).decode())
        while not (message := orjson.loads(await ws.recv())).get("is_final"):
            assert message["type"] == "message"


async def test_the_readme_nginx_bounds_bodies_and_names_the_real_client(proxied: str) -> None:
    head = (
        "POST /chat/send HTTP/1.1\r\nHost: portal\r\nContent-Type: application/json\r\n"
        f"Content-Length: {200 * 1024 * 1024}\r\n\r\n"
    ).encode()
    too_big = await exchange(proxied, head)
    assert too_big.status == 413 and too_big.seconds < 1.0
    # Clients on 127.0.0.2 and 127.0.0.3 (nginx itself is the trusted 127.0.0.1): a spoofed
    # X-Forwarded-For never picks the bucket, the address nginx saw does.
    body = {"specialist_id": DEMO, "message": "Hello"}
    statuses = {}
    for source in ("127.0.0.2", "127.0.0.3"):
        transport = httpx.AsyncHTTPTransport(local_address=source)
        async with httpx.AsyncClient(base_url=proxied, transport=transport, timeout=10) as client:
            statuses[source] = [
                (await client.post(
                    "/chat/send", json=body, headers={"x-forwarded-for": spoof}
                )).status_code
                for spoof in ("203.0.113.1", "203.0.113.2", "203.0.113.3")
            ]
    assert statuses == {"127.0.0.2": [200, 200, 429], "127.0.0.3": [200, 200, 429]}
