"""`python -m uvicorn backend.main:app --workers 2`: one view of the counters, whichever
worker answers the scrape, and a restart starts from a clean directory."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml
from prometheus_client.mmap_dict import MmapedDict

from backend.tests.observability.scrape import parse

DEMO = "44444444-4444-4444-8444-444444444444"
FRESH = httpx.Limits(max_keepalive_connections=0)  # a new connection each request


def free_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(tmp_path: Path, metrics_dir: Path, port: int) -> Iterator[str]:
    """The portal under uvicorn with two workers, in its own process group."""
    specialists = tmp_path / "specialists.yaml"
    specialists.write_text(yaml.safe_dump({"specialists": [
        {"id": DEMO, "name": "demo", "provider": "demo", "model": "demo-echo"},
    ]}))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS"))},
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "ENVIRONMENT": "test",
        "AUTH_MODE": "none",
        "USER_HASH_SECRET": "test-secret",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'usage.db'}",
        "AUTO_MIGRATE": "true",
        "USAGE_SPOOL_DIR": str(tmp_path / "spool"),
        "SPECIALISTS_FILE": str(specialists),
        "RATE_LIMIT_REQUESTS": "100000",
    }
    log = (tmp_path / "server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.main:app", "--workers", "2",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path, env=env, start_new_session=True,
        stdout=log, stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, tmp_path / "server.log")
        yield url
    finally:
        process.send_signal(signal.SIGINT)  # the supervisor stops its workers gracefully
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log.close()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until both workers answer /health (the supervisor starts them together)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not start within 60 s")


def requests_by_worker(metrics_dir: Path) -> dict[str, float]:
    """portal_requests_total per worker, read from each worker's own file."""
    totals: dict[str, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))
        totals[path.stem] = sum(
            value for key, value, *_ in values if '"portal_requests_total"' in key
        )
    return totals


async def send_until_both_workers_answered(url: str, metrics_dir: Path) -> int:
    """Send concurrent batches until each worker has served some; return how many were sent."""
    sent = 0
    async with httpx.AsyncClient(base_url=url, limits=FRESH, timeout=10) as client:
        # Until the second worker has started too (on a busy machine one can answer for a
        # while alone, /health included), for up to about 40 s.
        for _ in range(200):
            await asyncio.sleep(0.2)
            batch = [client.post("/chat/send", json={"specialist_id": DEMO, "message": "hi"})
                     for _ in range(10)]
            for response in await asyncio.gather(*batch):
                assert response.status_code == 200, response.text
            sent += len(batch)
            served = [v for v in requests_by_worker(metrics_dir).values() if v > 0]
            if len(served) >= 2:
                return sent
    raise AssertionError("one worker answered every request")


async def test_every_scrape_shows_the_sum_over_workers(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    port = free_port()
    with server(tmp_path, metrics_dir, port) as url:
        sent = await send_until_both_workers_answered(url, metrics_dir)
        assert sum(requests_by_worker(metrics_dir).values()) == sent
        async with httpx.AsyncClient(base_url=url, limits=FRESH, timeout=10) as client:
            for _ in range(12):
                m = parse((await client.get("/metrics")).text)
                assert m.value("portal_requests_total") == sent
                assert m.value("portal_requests_total", transport="send", outcome="ok") == sent
                assert m.value("portal_request_duration_seconds_count") == sent
                assert m.value("portal_upstream_attempts_total", provider="demo") == sent
                assert m.value("portal_streams_in_flight") == 0
    # A restart is a new server: yesterday's counts are gone, not added to today's.
    with server(tmp_path, metrics_dir, port) as url:
        async with httpx.AsyncClient(base_url=url, limits=FRESH, timeout=10) as client:
            for _ in range(4):
                m = parse((await client.get("/metrics")).text)
                assert m.value("portal_requests_total") == 0
                assert "portal_rate_limited_total" in m.names()
        assert sum(requests_by_worker(metrics_dir).values()) == 0
