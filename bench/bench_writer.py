"""The usage writer's cost: rows/s into PostgreSQL, and chat requests/s with it on vs off.

    python bench/bench_writer.py [--rows 50000] [--duration 3] [--rounds 9] [--warmup 1]
                                 [--dsn postgresql://127.0.0.1:5432/test] [--check]

Makes a throw-away database next to `--dsn` (dropped at the end) and measures:
1. rows/s: `insert_batch` straight (batches of 200 and 1000), the whole recorder (queue,
   batching, one transaction per batch), and a replay of a spool of the same size;
2. requests/s at concurrency 16 on /chat/send and /chat/stream against two portals in
   their own processes (one uvicorn worker each): the writer on (records to PostgreSQL) and
   off (records built, then discarded). Two specialists: the demo one (no upstream, so the
   writer's share of the work is as large as it can be) and the shipped OpenAI one talking
   to the OpenAI fake (bench_chat's, 20 chunks) in a process of its own. Each round loads,
   back to back and in an order that flips every round: the writer-on portal, the
   writer-off one, and the writer-off one again while another process gives the database
   the writer-on portal's rows (the control: on a 2-core machine the database's CPU is
   taken from the portal's). Ratios are the median of the per-round ratios; the portal's
   CPU time per request is printed too. At the end, the rows the writer-on portal wrote
   must equal the requests it answered.
The load client runs in its own process too (bench/_common.py). Everything listens on
127.0.0.1 and is stopped at the end, on Ctrl-C, or when the bench is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

from bench._common import (  # noqa: E402 - after the path set-up above
    Children,
    child_env,
    cpu_seconds,
    free_port,
    run_load,
    sigterm_as_exit,
    wait_http,
)

SPECIALISTS = {
    "demo": "00000000-0000-4000-8000-000000000001",
    "openai": "7e9df62c-54c9-45f6-b637-ef65d34b2387",  # General Assistant, gpt-4o
}


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
        main.UsageRecorder = DiscardingRecorder  # type: ignore[attr-defined]
    uvicorn.run(main.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def db_load(url: str, rate: float, duration: float) -> None:
    """Child process: a writer-on portal's database work, `rate` rows/s, from elsewhere.

    The records are built before "ready" is printed, then written by the writer's own
    `insert_batch` in batches of 200 paced to `rate`: the database's work is the writer's,
    while this process's CPU use is only the few us per row the writer adds to a portal.
    """
    from backend.database.engine import make_engine
    from backend.tests.usage.helpers import make_record
    from backend.usage.store import insert_batch

    size = 200
    batches = [
        [make_record() for _ in range(size)] for _ in range(max(1, int(rate * duration / size)))
    ]

    async def send() -> None:
        engine = make_engine(url)
        try:
            await insert_batch(engine, [make_record()])  # connect before the clock starts
            print("ready", flush=True)
            started = time.monotonic()
            for i, batch in enumerate(batches):
                await insert_batch(engine, batch)
                await asyncio.sleep(max(0.0, started + (i + 1) * size / rate - time.monotonic()))
        finally:
            await engine.dispose()

    asyncio.run(send())


# (specialist, endpoint, the bytes a complete answer ends with)
CASES = [
    ("demo", "/chat/send", b'"request_id"'), ("demo", "/chat/stream", b'"is_final":true'),
    ("openai", "/chat/send", b'"request_id"'), ("openai", "/chat/stream", b'"is_final":true'),
]
WRITERS = ("on", "off")
# What each round measures: the two portals, and the writer-off portal again while another
# process gives the database the writer-on portal's work (the control: on 2 cores the
# database's CPU is taken from the portal's, which a database host of its own would not).
VARIANTS = ("on", "off", "off+db")
TARGET_RATIO = 0.9  # the issue: writer on within 10 % of writer off


def start_portals(children: Children, url: str, tmp: Path) -> dict[str, tuple[str, int]]:
    """The fake upstream and one portal per writer mode; each writer's base URL and pid."""
    from bench.bench_chat import API_KEY

    fake = free_port()
    children.start("fake", [sys.executable, "-m", "bench.bench_chat", "fake", "--port",
                            str(fake)], child_env())
    portals: dict[str, tuple[str, int]] = {}
    for writer in WRITERS:
        port = free_port()
        children.start(f"portal-{writer}", [sys.executable, __file__, "serve", str(port), writer],
                       child_env(
            DATABASE_URL=url, AUTO_MIGRATE="true", ENVIRONMENT="development",
            RATE_LIMIT_REQUESTS=str(10**12), RATE_LIMIT_WINDOW_SECONDS="3600",
            LOG_LEVEL="WARNING", USAGE_SPOOL_DIR=str(tmp / writer),
            OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=f"http://127.0.0.1:{fake}/v1",
        ))
        portals[writer] = (f"http://127.0.0.1:{port}", children.pid(f"portal-{writer}"))
    wait_http(children, f"http://127.0.0.1:{fake}/health")
    for base, _ in portals.values():
        wait_http(children, f"{base}/health")  # the writer-on one migrates first, so in turn
    return portals


def _with_db_load(url: str, rate: float, duration: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "dbload", url, str(rate), str(duration)],
        cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"the database load process failed ({proc.wait()})")
    return proc


def _point(
    portals: dict[str, tuple[str, int]], variant: str, path: str, body: bytes, tail: bytes,
    duration: float, control: tuple[str, float] | None,
) -> dict[str, float]:
    base, pid = portals[variant.split("+")[0]]
    side = _with_db_load(*control, duration) if control else None
    try:
        before = cpu_seconds(pid)
        result = run_load(base + path, body, concurrency=16, duration=duration, expect_tail=tail)
        cpu = cpu_seconds(pid) - before
    finally:
        if side is not None:
            side.kill()
            side.wait()
    if result["errors"]:
        raise RuntimeError(f"{variant} {path}: {result['first_error']}")
    return {"rps": result["rps"], "cpu_us": 1e6 * cpu / max(1, result["requests"]),
            "requests": result["requests"]}


def chat_rounds(
    portals: dict[str, tuple[str, int]], url: str, args: argparse.Namespace
) -> tuple[dict[tuple[str, str, str], list[dict[str, float]]], int]:
    """Each case on every variant back to back, `rounds` times; the samples and how many
    requests the writer-on portal answered (each of which must become one row).

    Ratios are taken within a round, and the order flips every round: a neighbour's burst
    of CPU use, or a slow drift, skews one round's ratio, not the comparison.
    """
    samples: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    answered = 0
    on_rps: dict[str, float] = {}  # per path and specialist: the rate the control replays
    for round_no in range(args.rounds):
        for specialist, path, tail in CASES:
            case = f"{specialist} {path}"
            body = json.dumps(
                {"specialist_id": SPECIALISTS[specialist], "message": "How are the Q3 numbers?"}
            ).encode()
            if round_no == 0 and args.warmup > 0:
                for writer in WRITERS:
                    warm = run_load(portals[writer][0] + path, body, concurrency=16,
                                    duration=args.warmup, expect_tail=tail)
                    if writer == "on":
                        answered += warm["requests"]
                        on_rps[case] = warm["rps"]
            got: dict[str, dict[str, float]] = {}
            for variant in VARIANTS if round_no % 2 == 0 else VARIANTS[::-1]:
                # Set by now: round 0 loads "on" first, later rounds have an earlier "on".
                control = (url, on_rps[case]) if variant == "off+db" else None
                got[variant] = _point(portals, variant, path, body, tail, args.duration, control)
                samples.setdefault((specialist, path, variant), []).append(got[variant])
                if variant == "on":
                    on_rps[case] = got[variant]["rps"]
            answered += int(got["on"]["requests"])
            print(f"  round {round_no + 1} {case:20} req/s on {got['on']['rps']:6,.0f} off "
                  f"{got['off']['rps']:6,.0f} off+db {got['off+db']['rps']:6,.0f}", flush=True)
    return samples, answered


def report_chat(samples: dict[tuple[str, str, str], list[dict[str, float]]]) -> list[str]:
    """Print medians and per-round ratios; return the cases under target."""
    print("\nchat at concurrency 16, medians of rounds: req/s, portal CPU us/request, and"
          "\nthe per-round ratios' median [min-max]. on/off is the issue's figure (target >="
          f" {TARGET_RATIO:.0%});\non/off+db is the writer's own cost, the database's CPU use"
          " being equal on both sides:")
    under = []
    for specialist, path, _ in CASES:
        runs = {v: samples[(specialist, path, v)] for v in VARIANTS}
        med = {v: {k: statistics.median(s[k] for s in runs[v]) for k in ("rps", "cpu_us")}
               for v in VARIANTS}
        ratio = statistics.median(_ratios(runs["on"], runs["off"]))
        under += [] if ratio >= TARGET_RATIO else [f"{specialist} {path}"]
        print(f"  {specialist:6} {path:13} req/s on {med['on']['rps']:6,.0f} off "
              f"{med['off']['rps']:6,.0f} off+db {med['off+db']['rps']:6,.0f}   CPU us/req on "
              f"{med['on']['cpu_us']:4.0f} off {med['off']['cpu_us']:4.0f} off+db "
              f"{med['off+db']['cpu_us']:4.0f}")
        print(f"  {'':20} on/off {_spread(runs['on'], runs['off'])} "
              f"{'ok' if ratio >= TARGET_RATIO else 'UNDER TARGET':12}  "
              f"on/off+db {_spread(runs['on'], runs['off+db'])}")
    return under


def _ratios(a: list[dict[str, float]], b: list[dict[str, float]]) -> list[float]:
    return [x["rps"] / y["rps"] for x, y in zip(a, b, strict=True)]


def _spread(a: list[dict[str, float]], b: list[dict[str, float]]) -> str:
    ratios = _ratios(a, b)
    return f"{statistics.median(ratios):6.1%} [{min(ratios):.0%}-{max(ratios):.0%}]"


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


async def _portal_rows(url: str) -> int:
    """Rows the portal wrote: the rows/s part and the control write made-up specialists."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM usage_log WHERE specialist_id = ANY($1::text[])",
            list(SPECIALISTS.values()),
        )
        return count
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> int:
    """Both parts in a throw-away database; the report; 1 under `--check` if under target."""
    url = asyncio.run(_create_database(args.dsn))
    try:
        with tempfile.TemporaryDirectory(prefix="bench_writer_") as tmp_name, sigterm_as_exit():
            tmp = Path(tmp_name)
            print(f"PostgreSQL rows/s ({args.rows} rows each):")
            for name, value in asyncio.run(bench_rows(url, args.rows, tmp)).items():
                print(f"  {name:<38} {value:>10,.0f}")
            print(f"\nchat: {args.rounds} rounds of {len(CASES)} cases x {len(VARIANTS)} variants, "
                  f"{args.duration:g} s each")
            children = Children(tmp)
            try:
                portals = start_portals(children, url, tmp)
                samples, answered = chat_rounds(portals, url, args)
            finally:
                children.stop_all()  # SIGTERM: the writer-on portal drains its queue
            rows = asyncio.run(_portal_rows(url))
    finally:
        asyncio.run(_drop_database(args.dsn, url))
    under = report_chat(samples)
    print(f"\nwriter-on portal: {rows:,} rows written for {answered:,} answered requests"
          f" ({'ok' if rows == answered else 'MISMATCH'})")
    return 1 if args.check and (under or rows != answered) else 0


def main() -> None:
    """Parse arguments; run the bench, or the portal child role."""
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "dbload":
        db_load(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get(
        "TEST_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test"))
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds, first round only")
    parser.add_argument("--rounds", type=int, default=9, help="rounds; the order flips each round")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a case is under target or rows != answered requests")
    args = parser.parse_args()
    try:
        sys.exit(run(args))
    except KeyboardInterrupt:  # `run` has stopped every child in its `finally` by now
        print("\ninterrupted; all bench processes stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
