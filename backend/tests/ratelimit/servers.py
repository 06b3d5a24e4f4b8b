"""Start the service the way the README does, as separate processes, for end-to-end proofs."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[3]
DEMO = "00000000-0000-4000-8000-000000000001"


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(tmp_path: Path, name: str, **settings: str) -> dict[str, str]:
    """The environment of one server process: its own database, a test secret, `settings`."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        ENVIRONMENT="test",
        AUTH_MODE="none",
        USER_HASH_SECRET="test-secret",
        DATABASE_URL=f"sqlite:///{tmp_path / f'{name}.db'}",
        USAGE_SPOOL_DIR=str(tmp_path / f"{name}-spool"),
        OPENAI_API_KEY="",
        ANTHROPIC_API_KEY="",
        GOOGLE_API_KEY="",
    )
    env.update(settings)
    return env


@asynccontextmanager
async def uvicorn_servers(
    envs: Sequence[dict[str, str]], args: Sequence[Sequence[str]] | None = None
) -> AsyncIterator[list[str]]:
    """Run `python -m uvicorn backend.main:app --port N [args]` once per env, all at once;
    yield their base URLs."""
    async with uvicorn_processes(envs, args) as started:
        yield [url for url, _ in started]


@asynccontextmanager
async def uvicorn_processes(
    envs: Sequence[dict[str, str]], args: Sequence[Sequence[str]] | None = None
) -> AsyncIterator[list[tuple[str, asyncio.subprocess.Process]]]:
    """As `uvicorn_servers`, yielding each server's URL with its process."""
    # A file, not a pipe: a pipe nobody reads would stall a server that logs a lot.
    logs = [tempfile.TemporaryFile() for _ in envs]
    procs: list[asyncio.subprocess.Process] = []
    try:
        started = await asyncio.gather(*(
            _start(env, log, extra, procs)
            for env, log, extra in zip(envs, logs, args or [()] * len(envs), strict=True)
        ))
        yield started
    except BaseException:
        for log in logs:  # pytest shows this with the failure: the servers' own account
            log.seek(0)
            print(log.read().decode(errors="replace")[-5000:])
        raise
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for log in logs:
            log.close()


async def _start(
    env: dict[str, str], log: IO[bytes], extra: Sequence[str],
    procs: list[asyncio.subprocess.Process],
) -> tuple[str, asyncio.subprocess.Process]:
    """Start one server and wait until it answers. A port taken between `free_port()` and
    the server's bind (by another process on a busy machine) is retried on a new one."""
    for attempt in range(3):
        port = free_port()
        log.seek(0)
        log.truncate()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "uvicorn", "backend.main:app", "--port", str(port),
            "--log-level", "warning", *extra,
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        try:
            await _wait_ready(proc, url, log)
        except RuntimeError as exc:
            if "address already in use" in str(exc) and attempt < 2:
                continue
            raise
        return url, proc
    raise AssertionError("unreachable")


async def _wait_ready(
    proc: asyncio.subprocess.Process, url: str, log: IO[bytes], within: float = 30
) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise RuntimeError(f"server exited with {proc.returncode}:\n{err}")
            try:
                async with session.get(f"{url}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"server at {url} did not start within {within} s")


async def burst(
    urls: Sequence[str],
    count: int,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> list[tuple[int, dict[str, str]]]:
    """`count` chat requests at once, spread over `urls`; (status, headers) for each."""
    payload = orjson.dumps(body or {"specialist_id": DEMO, "message": "hello"})
    sent = {"content-type": "application/json", **(headers or {})}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        go = asyncio.Event()

        async def one(index: int) -> tuple[int, dict[str, str]]:
            await go.wait()  # every request is ready before the first is sent
            url = urls[index % len(urls)]
            async with session.post(f"{url}/chat/send", data=payload, headers=sent) as r:
                await r.read()
                return r.status, {k.lower(): v for k, v in r.headers.items()}

        tasks = [asyncio.create_task(one(i)) for i in range(count)]
        await asyncio.sleep(0)
        go.set()
        return await asyncio.gather(*tasks)
