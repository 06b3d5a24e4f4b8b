"""What budgets cost: /chat/send req/s with budgets on (in-process, and on Redis) vs off.

    python -m bench.bench_budgets [--duration 5] [--rounds 9] [--concurrency 16] [--warmup 1]
                                  [--redis-url redis://127.0.0.1:6379/0] [--check]

Starts, each in its own process: bench_chat's fake OpenAI upstream, and three portals (one
uvicorn worker each, limiter in memory, usage records on) that differ only in
BUDGET_BACKEND: `off`; `memory`; and `redis`. The two with budgets have a per-user budget,
a group-free user and a portal budget, all far from exhausted, so every request reserves
on two budgets and settles on them. Rounds rotate which portal goes first; the figures are
medians of the per-round ratios. Target: in-process within 10 % of off. The server's CPU
per request is printed beside it: on a shared 2-core machine a single point's req/s
scatters by tens of percent, while the CPU a request costs the portal scatters far less.
Last, the same two settings (off, memory) as two apps in this one process, with the demo
provider, measured in alternating blocks of requests: CPU per request, paired in time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

from bench._common import (
    Children,
    child_env,
    cpu_seconds,
    free_port,
    paired_cpu,
    rounds_main,
    run_load,
    sigterm_as_exit,
    wait_http,
)
from bench.bench_chat import API_KEY, MESSAGE, chat_body, specialists_yaml, uvicorn_args

TARGET_RATIO = 0.90
MODES = ("off", "memory", "redis")


def start_all(children: Children, tmp: Path, redis_url: str) -> dict[str, str]:
    """The fake and the three portals; their /chat/send URLs."""
    fake = free_port()
    base = f"http://127.0.0.1:{fake}/v1"
    children.start("fake", [sys.executable, "-m", "bench.bench_chat", "fake", "--port",
                            str(fake), "--chunks", "20"], child_env())
    (tmp / "specialists.yaml").write_text(specialists_yaml())
    budgets = {"BUDGET_USER_USD": "1000000", "BUDGETS": json.dumps({"portal": 1e8})}
    modes = {
        "off": {"BUDGET_BACKEND": "off"},
        "memory": {"BUDGET_BACKEND": "memory", **budgets},
        "redis": {"BUDGET_BACKEND": "redis", "REDIS_URL": redis_url,
                  "BUDGET_REDIS_PREFIX": f"bench:{uuid.uuid4().hex}:", **budgets},
    }
    urls = {}
    for mode, extra in modes.items():
        port = free_port()
        children.start(mode, uvicorn_args("backend.main:app", port), child_env(
            ENVIRONMENT="development", OPENAI_BASE_URL=base, OPENAI_API_KEY=API_KEY,
            DATABASE_URL=f"sqlite:///{tmp / f'usage-{mode}.db'}",
            USAGE_SPOOL_DIR=str(tmp / f"spool-{mode}"),
            SPECIALISTS_FILE=str(tmp / "specialists.yaml"), RATE_LIMIT_BACKEND="memory",
            RATE_LIMIT_REQUESTS=str(10**12), LOG_LEVEL="WARNING", **extra,
        ))
        urls[mode] = f"http://127.0.0.1:{port}/chat/send"
    wait_http(children, f"http://127.0.0.1:{fake}/health")
    for url in urls.values():
        wait_http(children, url.replace("/chat/send", "/health"))
    return urls


def run(args: argparse.Namespace) -> int:
    """Measure the three portals in rotating rounds; print req/s and the ratios to off."""
    print(f"bench_budgets: /chat/send, concurrency {args.concurrency}, {args.duration:g} s per "
          f"point, {args.rounds} round(s)")
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}  # server CPU us per request
    ratios: dict[str, list[float]] = {"memory": [], "redis": []}
    cpu_ratios: dict[str, list[float]] = {"memory": [], "redis": []}
    errors = 0
    headers = {"X-User-Email": "bench@example.com"}
    body = chat_body()
    with tempfile.TemporaryDirectory(prefix="bench_budgets_") as tmp_name, sigterm_as_exit():
        children = Children(Path(tmp_name))
        try:
            urls = start_all(children, Path(tmp_name), args.redis_url)
            for mode in MODES:
                run_load(urls[mode], body, concurrency=args.concurrency, duration=args.warmup,
                         headers=headers, expect_tail=b'"request_id"')
            for round_no in range(args.rounds):
                order = MODES[round_no % 3:] + MODES[: round_no % 3]
                got = {}
                for mode in order:
                    before = cpu_seconds(children.pid(mode))
                    result = run_load(urls[mode], body, concurrency=args.concurrency,
                                      duration=args.duration, headers=headers,
                                      expect_tail=b'"request_id"')
                    errors += result["errors"]
                    if result["first_error"]:
                        print(f"  ! {mode}: {result['errors']} errors, first: "
                              f"{result['first_error']}")
                    used = cpu_seconds(children.pid(mode)) - before
                    cpu[mode].append(1e6 * used / max(1, result["requests"]))
                    got[mode] = result["rps"]
                    samples[mode].append(result["rps"])
                for mode in ratios:
                    ratios[mode].append(got[mode] / max(got["off"], 1e-9))
                    cpu_ratios[mode].append(cpu[mode][-1] / max(cpu["off"][-1], 1e-9))
                print(f"  round {round_no + 1}: " + "   ".join(
                    f"{mode} {got[mode]:6.0f} req/s {cpu[mode][-1]:5.0f} us CPU/req"
                    for mode in MODES), flush=True)
        finally:
            children.stop_all()
    memory = statistics.median(ratios["memory"])
    verdict = "ok" if memory >= TARGET_RATIO else "UNDER TARGET"
    print("\nmedian req/s: " + ", ".join(
        f"{mode} {statistics.median(samples[mode]):.0f}" for mode in MODES))
    print("median server CPU us/request: " + ", ".join(
        f"{mode} {statistics.median(cpu[mode]):.0f}" for mode in MODES))
    for mode in ratios:
        values = ratios[mode]
        cpus = cpu_ratios[mode]
        print(f"{mode}/off req/s median {statistics.median(values):.1%} "
              f"[{min(values):.0%}-{max(values):.0%}]; server CPU per request "
              f"{statistics.median(cpus) - 1:+.1%} [{min(cpus) - 1:+.0%} to {max(cpus) - 1:+.0%}]")
    print(f"in-process target >= {TARGET_RATIO:.0%}: {verdict}; load errors: {errors}")
    paired_ok = report_paired(paired_cpu(
        {"off": {"budget_backend": "off"},
         "memory": {"budget_backend": "memory", "budget_user_usd": 1e6,
                    "budgets": {"portal": 1e8}}},
        blocks=args.blocks, per_block=args.per_block, message=MESSAGE,
        headers={"X-User-Email": "bench@example.com"},
    ))
    return 1 if args.check and (memory < TARGET_RATIO or errors or not paired_ok) else 0


def report_paired(costs: dict[str, list[float]]) -> bool:
    """Median CPU per request with budgets off and in memory, and the median of the
    per-block ratios; True if within target on every endpoint."""
    print("\nin one process, alternating blocks (demo provider: the portal's own work is all "
          "there is, so this is an upper bound), CPU us per request:")
    within = True
    for endpoint in ("send", "stream"):
        off, on = costs[f"{endpoint} off"], costs[f"{endpoint} memory"]
        extra = [b / a - 1 for a, b in zip(off, on, strict=True)]
        cost = statistics.median(extra)
        within = within and cost <= 1 - TARGET_RATIO
        print(f"  /chat/{endpoint:7} off {statistics.median(off):6.0f}   memory "
              f"{statistics.median(on):6.0f}   budgets cost {cost:+.1%} "
              f"[{min(extra):+.1%}..{max(extra):+.1%}]")
    return within


def main() -> None:
    """Command line: `python -m bench.bench_budgets --help`."""
    rounds_main(__doc__, run, rounds=9, extra=_options)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--blocks", type=int, default=20, help="paired in-process blocks")
    parser.add_argument("--per-block", type=int, default=200, help="requests per block")


if __name__ == "__main__":
    main()
