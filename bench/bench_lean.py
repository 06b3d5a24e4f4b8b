"""The whole comparison in one command: the portal with every feature on against a bare relay.

    python -m bench.bench_lean [--rounds 5] [--duration 4] [--concurrency 16] [--check]
    python -m bench.bench_lean memory [--requests 200000] [--concurrency 16]
    python -m bench.bench_lean workers [--rounds 4] [--duration 4] [--concurrency 32]
    python -m bench.bench_lean instructions [--requests 300]   # under callgrind

Starts, each in its own process on 127.0.0.1: bench_chat's fake OpenAI upstream (20 text
chunks per stream), bench/passthrough.py (the ~30-line FastAPI + aiohttp relay) and the
portal (`python -m uvicorn backend.main:app`, one worker) with everything on: AUTH_MODE=jwt
with a static key set and one token (served from the verified-token cache after its first
use), a user and a portal budget in force (BUDGET_BACKEND=memory), metrics on, the PII
guard masking (the message has no PII), specialists from the database, usage records
written to SQLite. LiteLLM's proxy is not run (it is not on the development machines); the
run's first lines say whether it is installed.

For each endpoint (/chat/send, /chat/stream, /v1/chat/completions plain and streaming) and
round, relay and portal are measured side by side, in an order that flips every round:
requests/s at --concurrency, then latency at concurrency 1 (p50, and for streams the time
to the first token), each in --slices slices that alternate between the two (so that a slow
spell of the shared machine falls on both). Ratios are taken within a round, then the
median and range over rounds.
On two or more CPUs the server under test runs alone on the last one (the issue's "one
worker on its own core"), the fake upstream and the load client on the others.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._common import Children, cpu_seconds, sigterm_as_exit
from bench.bench_auth import signing_material
from bench.lean_instructions import instructions
from bench.lean_servers import (
    ENDPOINTS,
    Endpoint,
    endpoints,
    load,
    place,
    start_all,
    start_fake,
    start_portal,
)

TARGET_RATIO = 0.60
TARGET_ADDED_MS = {"send": 1.0, "v1": 1.0, "stream": 1.5, "v1-stream": 1.5}


def pair(
    eps: dict[str, Endpoint], pids: dict[str, int], order: tuple[str, ...],
    args: argparse.Namespace,
) -> dict[str, dict[str, float]]:
    """Each server's req/s and CPU per request at full concurrency, and p50 (and time to
    first token) at concurrency 1. Each is measured in `--slices` slices that alternate
    between the servers, so a slow spell of the machine falls on both, not on one."""
    busy = {name: {"requests": 0.0, "seconds": 0.0, "cpu": 0.0} for name in order}
    latencies: dict[str, list[float]] = {name: [] for name in order}
    firsts: dict[str, list[float]] = {name: [] for name in order}
    errors = dict.fromkeys(order, 0)
    first_error: str | None = None
    slice_seconds = args.duration / args.slices
    for _ in range(args.slices):
        for name in order:
            before = cpu_seconds(pids[name])
            got = load(eps[name], args.concurrency, slice_seconds)
            b = busy[name]
            b["cpu"] += cpu_seconds(pids[name]) - before
            b["requests"] += got["requests"]
            b["seconds"] += got["elapsed"]
            errors[name] += got["errors"]
            first_error = first_error or got["first_error"]
    for _ in range(args.slices):
        for name in order:
            got = load(eps[name], 1, slice_seconds, raw=True)
            latencies[name] += got["latencies_ms"]
            firsts[name] += got["firsts_ms"]
            errors[name] += got["errors"]
            first_error = first_error or got["first_error"]
    points = {}
    for name in order:
        if errors[name]:
            print(f"  ! {eps[name].url}: {errors[name]} errors, first: {first_error}")
        b = busy[name]
        points[name] = {
            "rps": b["requests"] / max(b["seconds"], 1e-9),
            "cpu_us": 1e6 * b["cpu"] / max(1.0, b["requests"]),
            "p50": _median(latencies[name]), "ttft": _median(firsts[name]),
            "errors": errors[name],
        }
    return points


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def compare(args: argparse.Namespace) -> int:
    """Relay vs portal, every endpoint, rounds in alternating order; print the tables."""
    print(f"bench_lean: concurrency {args.concurrency} and 1, {args.duration:g} s per point "
          f"(in {args.slices} slices alternating between the servers), {args.rounds} round(s), "
          f"2 servers x {len(ENDPOINTS)} endpoints")
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_lean_") as tmp_name, sigterm_as_exit():
        children = Children(Path(tmp_name))
        try:
            servers, litellm = start_all(children, Path(tmp_name))
            print(f"LiteLLM proxy: {litellm}")
            pids = {name: children.pid(name) for name in servers}
            print(place(children, pids.values()))
            for name in servers:  # warm both (the first JWT verification, pools, caches)
                for ep in servers[name].values():
                    load(ep, args.concurrency, args.warmup)
            for round_no in range(args.rounds):
                order = ("relay", "portal") if round_no % 2 == 0 else ("portal", "relay")
                for endpoint in ENDPOINTS:
                    eps = {name: servers[name][endpoint] for name in order}
                    for name, p in pair(eps, pids, order, args).items():
                        samples.setdefault((endpoint, name), []).append(p)
                    r, p = samples[(endpoint, "relay")][-1], samples[(endpoint, "portal")][-1]
                    print(f"  round {round_no + 1} {endpoint:9} relay {r['rps']:6.0f} req/s "
                          f"{r['cpu_us']:5.0f} us  portal {p['rps']:6.0f} req/s "
                          f"{p['cpu_us']:5.0f} us  ratio {p['rps'] / max(r['rps'], 1e-9):6.1%}"
                          f"  added p50 {p['p50'] - r['p50']:+5.2f} ms", flush=True)
        finally:
            children.stop_all()
    return 1 if report(samples, args) and args.check else 0


def _stats(values: list[float], fmt: str) -> str:
    return (f"{format(statistics.median(values), fmt)} "
            f"[{format(min(values), fmt)} .. {format(max(values), fmt)}]")


def report(samples: dict[tuple[str, str], list[dict[str, float]]],
           args: argparse.Namespace) -> list[str]:
    """The table: per endpoint, median [min .. max] over rounds; returns what missed."""
    missed: list[str] = []
    print(f"\nmedian [min .. max] over {args.rounds} rounds; ratios and differences taken "
          "within each round")
    print(f"{'endpoint':10} {'relay req/s':>12} {'portal req/s':>13} "
          f"{'portal/relay @' + str(args.concurrency):>24} {'CPU us/req relay':>17} "
          f"{'portal':>7} {'added p50 ms @1':>22} {'added TTFT ms @1':>22}")
    errors = 0
    for endpoint in ENDPOINTS:
        relay, portal = samples[(endpoint, "relay")], samples[(endpoint, "portal")]
        ratio = [p["rps"] / max(r["rps"], 1e-9) for r, p in zip(relay, portal, strict=True)]
        added = [p["p50"] - r["p50"] for r, p in zip(relay, portal, strict=True)]
        ttft = [p["ttft"] - r["ttft"] for r, p in zip(relay, portal, strict=True)]
        errors += int(sum(s["errors"] for s in relay + portal))
        late = statistics.median(ttft if endpoint.endswith("stream") else added)
        ttft_text = _stats(ttft, "+.2f") if endpoint.endswith("stream") else "-"
        print(f"{endpoint:10} {statistics.median(s['rps'] for s in relay):12.0f} "
              f"{statistics.median(s['rps'] for s in portal):13.0f} "
              f"{_stats([100 * x for x in ratio], '.1f'):>24} "
              f"{statistics.median(s['cpu_us'] for s in relay):17.0f} "
              f"{statistics.median(s['cpu_us'] for s in portal):7.0f} "
              f"{_stats(added, '+.2f'):>22} {ttft_text:>22}")
        if statistics.median(ratio) < TARGET_RATIO:
            missed.append(f"{endpoint} req/s")
        if late > TARGET_ADDED_MS[endpoint]:
            missed.append(f"{endpoint} latency")
    print(f"\ntargets: portal/relay >= {TARGET_RATIO:.0%}; added p50 <= 1.0 ms (send, v1), "
          f"added time to first token <= 1.5 ms (streams)")
    print(f"missed: {', '.join(missed) or 'none'}; load errors: {errors}")
    return missed + (["errors"] if errors else [])


def rss_kib(pid: int) -> int:
    """Resident set size of a process (Linux /proc), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory(args: argparse.Namespace) -> int:
    """RSS of the everything-on portal after 10,000 requests and at checkpoints to --requests."""
    checkpoints = sorted({10_000, *range(50_000, args.requests + 1, 50_000), args.requests})
    print(f"bench_lean memory: {args.requests} requests over the four endpoints in turn, "
          f"concurrency {args.concurrency}; RSS at {checkpoints}")
    with tempfile.TemporaryDirectory(prefix="bench_lean_mem_") as tmp_name, sigterm_as_exit():
        tmp = Path(tmp_name)
        children = Children(tmp)
        try:
            base = start_fake(children, tmp)
            jwks, token = signing_material()
            port = start_portal(children, "portal", tmp, base, jwks)
            eps = list(endpoints(port, {"Authorization": f"Bearer {token}"}, portal=True).values())
            pid, done, errors, started = children.pid("portal"), 0, 0, time.monotonic()
            rss: dict[int, int] = {}
            for checkpoint in checkpoints:
                while done < checkpoint:  # blocks of 2,500 requests, endpoint by endpoint
                    ep = eps[(done // 2500) % len(eps)]
                    batch = min(2500, checkpoint - done)
                    got = load(ep, args.concurrency, 600, max_requests=batch)
                    done += batch
                    errors += got["errors"]
                rss[checkpoint] = rss_kib(pid)
                print(f"  {checkpoint:7} requests: RSS {rss[checkpoint] / 1024:7.1f} MiB "
                      f"({time.monotonic() - started:.0f} s)", flush=True)
        finally:
            children.stop_all()
    growth = rss[checkpoints[-1]] / rss[10_000] - 1
    verdict = "ok" if abs(growth) <= 0.10 else "OVER TARGET"
    print(f"RSS {checkpoints[-1]} vs 10000 requests: {growth:+.1%} (target within 10 %): "
          f"{verdict}; load errors: {errors}")
    return 1 if args.check and (verdict != "ok" or errors) else 0


def workers(args: argparse.Namespace) -> int:
    """/chat/send req/s of the everything-on portal with --workers 2 against 1."""
    cores = os.cpu_count()
    print(f"bench_lean workers: /chat/send at concurrency {args.concurrency}, {args.rounds} "
          f"round(s) of {args.duration:g} s; {cores} CPU(s), shared with the fake upstream "
          "and the load client")
    ratios: list[float] = []
    rps: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="bench_lean_w_") as tmp_name, sigterm_as_exit():
        tmp = Path(tmp_name)
        children = Children(tmp)
        try:
            base = start_fake(children, tmp)
            jwks, token = signing_material()
            auth = {"Authorization": f"Bearer {token}"}
            eps = {n: endpoints(start_portal(children, f"w{n}", tmp, base, jwks, workers=n),
                                auth, portal=True)["send"] for n in (1, 2)}
            for ep in eps.values():
                load(ep, args.concurrency, args.warmup)
            for round_no in range(args.rounds):
                order = (1, 2) if round_no % 2 == 0 else (2, 1)
                got = {n: load(eps[n], args.concurrency, args.duration)["rps"] for n in order}
                for n in order:
                    rps[n].append(got[n])
                ratios.append(got[2] / max(got[1], 1e-9))
                print(f"  round {round_no + 1}: 1 worker {got[1]:6.0f} req/s, 2 workers "
                      f"{got[2]:6.0f} req/s, 2/1 {ratios[-1]:.2f}x", flush=True)
        finally:
            children.stop_all()
    print(f"median req/s: 1 worker {statistics.median(rps[1]):.0f}, 2 workers "
          f"{statistics.median(rps[2]):.0f}; 2/1 median {statistics.median(ratios):.2f}x "
          f"[{min(ratios):.2f}x .. {max(ratios):.2f}x]")
    return 0


def main() -> None:
    """Command line: `python -m bench.bench_lean --help`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="compare",
                        choices=["compare", "memory", "workers", "instructions"])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds per endpoint, once")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; median")
    parser.add_argument("--slices", type=int, default=4,
                        help="each point's time, cut into slices that alternate between "
                             "relay and portal")
    parser.add_argument("--concurrency", type=int, default=None, help="16 (workers: 32)")
    parser.add_argument("--requests", type=int, default=None,
                        help="memory: total requests (200,000); instructions: per endpoint (300)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()
    if args.concurrency is None:
        args.concurrency = 32 if args.mode == "workers" else 16
    if args.requests is None:
        args.requests = 300 if args.mode == "instructions" else 200_000
    run = {"compare": compare, "memory": memory, "workers": workers,
           "instructions": instructions}[args.mode]
    try:
        sys.exit(run(args))
    except KeyboardInterrupt:  # every child was stopped in a `finally` by now
        print("\ninterrupted; all bench processes stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
