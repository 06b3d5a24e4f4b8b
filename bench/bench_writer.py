"""The usage writer's cost: rows/s into PostgreSQL, and chat requests/s with it on vs off.

    python bench/bench_writer.py [--rows 50000] [--duration 5] [--rounds 3]
                                 [--dsn postgresql://127.0.0.1:5432/test]

Makes a throw-away database next to `--dsn` (dropped at the end) and measures:
1. rows/s: `insert_batch` straight (batches of 200 and 1000), the whole recorder (queue,
   batching, one transaction per batch), and a replay of a spool of the same size;
2. requests/s at concurrency 16 on /chat/send and /chat/stream against two portals in
   their own processes (one uvicorn worker each): the writer on (records to PostgreSQL) and
   off (records built, then discarded). Two specialists: the demo one (no upstream, so the
   writer's share of the work is as large as it can be) and an OpenAI one talking to the
   OpenAI fake (backend/tests/fakes/openai_fake.py, 20 chunks) in a process of its own.
   Rounds alternate on/off; medians are reported, and the portal's CPU time per request,
   which a busy machine disturbs far less than requests/s.
The load client runs in its own process too. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPECIALISTS = {
    "demo": "00000000-0000-4000-8000-000000000001",
    "openai": "7e9df62c-54c9-45f6-b637-ef65d34b2387",  # General Assistant, gpt-4o
}
ADMIN_TOKEN = "bench-admin-token-0123456789"


# ---- 1. rows/s ---------------------------------------------------------------------------


async def bench_rows(url: str, rows: int, spool_dir: Path) -> dict[str, float]:
    """Rows/s for direct batches, the recorder end to end, and a spool replay."""
    from backend.database.engine import make_engine
    from backend.database.migrations import upgrade
    from backend.tests.usage.helpers import make_record
    from backend.usage.recorder import RecorderConfig, UsageRecorder
    from backend.usage.spool import Spool
    from backend.usage.store import insert_batch

    engine = make_engine(url)
    await upgrade(engine)
    results: dict[str, float] = {}
    try:
        for size in (200, 1000):
            records = [make_record() for _ in range(rows)]
            started = time.perf_counter()
            for i in range(0, rows, size):
                await insert_batch(engine, records[i : i + size])
            results[f"insert_batch x{size}"] = rows / (time.perf_counter() - started)

        records = [make_record() for _ in range(rows)]
        recorder = UsageRecorder(engine, Spool(spool_dir / "a"), RecorderConfig(max_queue=rows))
        recorder.start()
        started = time.perf_counter()
        for record in records:
            recorder.record(record)
        await recorder.flush()
        results["recorder (queue -> batches of 200)"] = rows / (time.perf_counter() - started)
        assert recorder.counters.written == rows and recorder.spool_records == 0
        await recorder.close()

        spool = Spool(spool_dir / "b")
        spool.append(make_record() for _ in range(rows))
        spool.close()
        recorder = UsageRecorder(engine, Spool(spool_dir / "b"), RecorderConfig())
        started = time.perf_counter()
        recorder.start()
        while recorder.spool_records:  # noqa: ASYNC110 - polls a counter, 5 ms is precise enough
            await asyncio.sleep(0.005)
        results["spool replay (batches of 1000)"] = rows / (time.perf_counter() - started)
        await recorder.close()
    finally:
        await engine.dispose()
    return results


# ---- 2. chat requests/s, writer on vs off -------------------------------------------------


def serve(port: int, writer: str) -> None:
    """Child process: the portal on `port`, with the usage writer on or off."""
    import uvicorn

    import backend.main as main
    from backend.usage.recorder import UsageRecorder

    class DiscardingRecorder(UsageRecorder):
        """Writer off: records are built by the chat service as usual, then dropped."""

        def record(self, record: Any) -> None:
            """Drop it."""

    if writer == "off":
        main.UsageRecorder = DiscardingRecorder  # type: ignore[misc]
    uvicorn.run(main.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def upstream(port: int) -> None:
    """Child process: the OpenAI fake, answering every call with 20 chunks and usage."""
    from aiohttp import web

    from backend.tests.fakes import openai_fake
    from backend.tests.fakes.script import FakeState, Script

    # No request log: the bench sends far more requests than a test.
    state = FakeState(script=Script(chunks=["word "] * 20), requests=_NoList())
    web.run_app(openai_fake.build_app(state), host="127.0.0.1", port=port, print=None)


class _NoList(list[Any]):
    """A list that keeps nothing."""

    def append(self, item: Any) -> None:
        """Forget it."""


async def load(
    url: str, path: str, specialist: str, duration: float, concurrency: int
) -> dict[str, float]:
    """Child process: keep `concurrency` requests in flight for `duration` seconds."""
    import aiohttp

    body = json.dumps(
        {"specialist_id": SPECIALISTS[specialist], "message": "How are the Q3 numbers?"}
    ).encode()
    done, errors = 0, 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < deadline:
                async with session.post(
                    url + path, data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    await response.read()
                    if response.status == 200:
                        done += 1
                    else:
                        errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"rps": done / elapsed, "errors": errors}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the portal at {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the portal at {url} did not start")


def _run_load(url: str, path: str, specialist: str, duration: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "load", url, path, specialist, str(duration)],
        capture_output=True, check=True, timeout=duration + 60,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def _cpu_seconds(pid: int) -> float:
    # utime + stime of the portal process (Linux): CPU per request is far less sensitive
    # to a busy machine than requests/s, which the database's own CPU use also lowers.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status(url: str) -> dict[str, Any]:
    import urllib.request

    request = urllib.request.Request(
        url + "/usage/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def bench_chat(url: str, spool_dir: Path, duration: float, rounds: int) -> dict[str, Any]:
    """Alternate load on the writer-on and writer-off portals; per-round figures."""
    from backend.tests.fakes import openai_fake

    fake_port = _free_port()
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": url, "AUTO_MIGRATE": "true",
        "RATE_LIMIT_REQUESTS": "1000000000", "ADMIN_TOKEN": ADMIN_TOKEN, "LOG_LEVEL": "WARNING",
        "ENVIRONMENT": "development", "OPENAI_API_KEY": openai_fake.API_KEY,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
    }
    procs: list[subprocess.Popen[bytes]] = []
    servers: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    try:
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "upstream", str(fake_port)], cwd=ROOT, env=env,
            start_new_session=True,
        ))
        for writer in ("on", "off"):
            port = _free_port()
            proc = subprocess.Popen(
                [sys.executable, __file__, "serve", str(port), writer], cwd=ROOT,
                env={**env, "USAGE_SPOOL_DIR": str(spool_dir / writer)},
                start_new_session=True,
            )
            procs.append(proc)
            servers[writer] = (f"http://127.0.0.1:{port}", proc)
            _wait_up(servers[writer][0], proc)
        rps: dict[tuple[str, str, str], list[float]] = {}
        cpu: dict[tuple[str, str, str], list[float]] = {}
        for _ in range(rounds):
            for case in CASES:
                for writer in ("on", "off"):
                    pid = servers[writer][1].pid
                    before = _cpu_seconds(pid)
                    result = _run_load(servers[writer][0], case[1], case[0], duration)
                    used = _cpu_seconds(pid) - before
                    assert result["errors"] == 0, result
                    rps.setdefault((*case, writer), []).append(result["rps"])
                    cpu.setdefault((*case, writer), []).append(
                        used / (result["rps"] * duration) * 1000
                    )
        time.sleep(0.5)  # let the last batch land
        status = _status(servers["on"][0])
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    return {"rps": rps, "cpu": cpu, "status": status}


CASES = [
    ("demo", "/chat/send"), ("demo", "/chat/stream"),
    ("openai", "/chat/send"), ("openai", "/chat/stream"),
]


# ---- the run -----------------------------------------------------------------------------


async def _create_database(dsn: str) -> str:
    import asyncpg

    name = f"bench_usage_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{dsn.rsplit('/', 1)[0]}/{name}"


async def _drop_database(dsn: str, url: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


def main() -> None:
    """Parse arguments; run the bench, or one of its child roles."""
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "upstream":
        upstream(int(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        result = asyncio.run(load(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), 16))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get(
        "TEST_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test"))
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    url = asyncio.run(_create_database(args.dsn))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"PostgreSQL rows/s ({args.rows} rows each):")
            for name, value in asyncio.run(bench_rows(url, args.rows, Path(tmp))).items():
                print(f"  {name:<38} {value:>10,.0f}")
            chat = bench_chat(url, Path(tmp), args.duration, args.rounds)
    finally:
        asyncio.run(_drop_database(args.dsn, url))
    print(f"\nchat, concurrency 16, median of {args.rounds} rounds "
          "(requests/s; portal CPU ms per request):")
    for specialist, path in CASES:
        on, off = ((specialist, path, "on"), (specialist, path, "off"))
        rps_on, rps_off = (statistics.median(chat["rps"][k]) for k in (on, off))
        cpu_on, cpu_off = (statistics.median(chat["cpu"][k]) for k in (on, off))
        print(f"  {specialist:<6} {path:<13} req/s on {rps_on:6,.0f} off {rps_off:6,.0f} "
              f"= {rps_on / rps_off:6.1%}   CPU on {cpu_on:.3f} off {cpu_off:.3f} "
              f"= {cpu_on / cpu_off:6.1%}")
        rounds_on = ", ".join(f"{x:,.0f}" for x in chat["rps"][on])
        rounds_off = ", ".join(f"{x:,.0f}" for x in chat["rps"][off])
        print(f"  {'':<20} rounds: on {rounds_on} / off {rounds_off}")
    counters = chat["status"]["counters"]
    print(f"\nwriter-on portal: {counters['written']:,} rows written, "
          f"{chat['status']['spool_records']} in the spool, {counters['lost']} lost")


if __name__ == "__main__":
    main()
