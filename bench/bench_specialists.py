"""What governed specialists cost: /chat/send req/s with specialists from the database
(SPECIALISTS_SOURCE=database, the poll running) vs from the file (SPECIALISTS_SOURCE=file).

    python -m bench.bench_specialists [--duration 5] [--rounds 3] [--concurrency 16]
                                      [--warmup 1] [--check]

Starts bench_chat's fake OpenAI upstream and two portals (one uvicorn worker each, limiter
and usage records on, AUTH_MODE=none) that differ only in SPECIALISTS_SOURCE. The database
portal seeds its SQLite file from the same specialists file and polls it every 0.5 s; its
request path reads the same in-memory snapshot as the file portal's. Rounds alternate which
portal goes first; the figure is the median of the per-round ratios. Target: within 2 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench._common import (
    Children,
    child_env,
    cpu_seconds,
    free_port,
    run_load,
    sigterm_as_exit,
    wait_http,
)
from bench.bench_chat import API_KEY, chat_body, specialists_yaml, uvicorn_args

TARGET_RATIO = 0.98
SOURCES = ("file", "database")


def start_all(children: Children, tmp: Path) -> dict[str, str]:
    """The fake and both portals; their /chat/send URLs."""
    fake = free_port()
    base = f"http://127.0.0.1:{fake}/v1"
    children.start("fake", [sys.executable, "-m", "bench.bench_chat", "fake", "--port",
                            str(fake), "--chunks", "20"], child_env())
    (tmp / "specialists.yaml").write_text(specialists_yaml())
    urls = {}
    for source in SOURCES:
        port = free_port()
        children.start(source, uvicorn_args("backend.main:app", port), child_env(
            ENVIRONMENT="development", OPENAI_BASE_URL=base, OPENAI_API_KEY=API_KEY,
            DATABASE_URL=f"sqlite:///{tmp / f'portal-{source}.db'}",
            USAGE_SPOOL_DIR=str(tmp / f"spool-{source}"),
            SPECIALISTS_FILE=str(tmp / "specialists.yaml"), SPECIALISTS_SOURCE=source,
            RATE_LIMIT_REQUESTS=str(10**12), LOG_LEVEL="WARNING",
        ))
        urls[source] = f"http://127.0.0.1:{port}/chat/send"
    wait_http(children, f"http://127.0.0.1:{fake}/health")
    for url in urls.values():
        wait_http(children, url.replace("/chat/send", "/health"))
    return urls


def run(args: argparse.Namespace) -> int:
    """Measure both sources in alternating rounds; print req/s and the ratio."""
    print(f"bench_specialists: /chat/send, concurrency {args.concurrency}, {args.duration:g} s "
          f"per point, {args.rounds} round(s)")
    samples: dict[str, list[float]] = {source: [] for source in SOURCES}
    ratios: list[float] = []
    cpu: dict[str, list[float]] = {source: [] for source in SOURCES}  # µs per request
    errors = 0
    body = chat_body()
    with tempfile.TemporaryDirectory(prefix="bench_specialists_") as tmp_name, \
            sigterm_as_exit():
        children = Children(Path(tmp_name))
        try:
            urls = start_all(children, Path(tmp_name))
            for source in SOURCES:
                run_load(urls[source], body, concurrency=args.concurrency,
                         duration=args.warmup, expect_tail=b'"request_id"')
            for round_no in range(args.rounds):
                order = SOURCES if round_no % 2 == 0 else SOURCES[::-1]
                got = {}
                for source in order:
                    before = cpu_seconds(children.pid(source))
                    result = run_load(urls[source], body, concurrency=args.concurrency,
                                      duration=args.duration, expect_tail=b'"request_id"')
                    used = cpu_seconds(children.pid(source)) - before
                    cpu[source].append(used * 1e6 / max(result["requests"], 1))
                    errors += result["errors"]
                    got[source] = result["rps"]
                    samples[source].append(result["rps"])
                ratios.append(got["database"] / max(got["file"], 1e-9))
                print(f"  round {round_no + 1}: file {got['file']:7.0f} req/s "
                      f"{cpu['file'][-1]:5.0f} CPU µs/req   database {got['database']:7.0f} "
                      f"req/s {cpu['database'][-1]:5.0f} CPU µs/req   database/file "
                      f"{ratios[-1]:6.1%}", flush=True)
        finally:
            children.stop_all()
    ratio = statistics.median(ratios)
    verdict = "ok" if ratio >= TARGET_RATIO else "UNDER TARGET"
    print(f"\nmedian req/s: file {statistics.median(samples['file']):.0f}, database "
          f"{statistics.median(samples['database']):.0f}; database/file median {ratio:.1%} "
          f"[{min(ratios):.1%}-{max(ratios):.1%}] (target >= {TARGET_RATIO:.0%}): {verdict}; "
          f"load errors: {errors}")
    cpu_file, cpu_db = statistics.median(cpu["file"]), statistics.median(cpu["database"])
    print(f"median CPU µs/request: file {cpu_file:.0f}, database {cpu_db:.0f} "
          f"(database/file {cpu_db / max(cpu_file, 1e-9):.1%}; lower is cheaper)")
    return 1 if args.check and (ratio < TARGET_RATIO or errors) else 0


def main() -> None:
    """Command line: `python -m bench.bench_specialists --help`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds per portal, once")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; median")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--check", action="store_true", help="exit 1 if under target or errors")
    args = parser.parse_args()
    try:
        sys.exit(run(args))
    except KeyboardInterrupt:
        print("\ninterrupted; all bench processes stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
