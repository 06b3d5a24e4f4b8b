"""What the front door costs: the portal as shipped against the same portal without it.

    python -m bench.bench_frontdoor [--rounds 3] [--duration 3] [--concurrency 16]

Three servers, one worker each, side by side in one run, on the demo specialist (no
upstream), rate limiter and usage records on as shipped:
- **shipped**: `python -m uvicorn backend.main:app`: the guarded httptools parser (header
  size and time bounds) and the body limits (MAX_REQUEST_BYTES, BODY_READ_TIMEOUT_SECONDS);
- **unguarded**: the same app with both removed (`bench/_frontdoor_off.py`): the "before";
- **h11**: the shipped app under `--http h11`, the other remedy for the header problem
  (h11 bounds headers itself but parses in Python).
Each round measures every server back to back (`POST /chat/send` at `--concurrency`);
the table gives medians over rounds, and each server's req/s as a share
of the unguarded one's within the same round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench._common import Children, child_env, cpu_seconds, free_port, run_load, wait_http

DEMO = "00000000-0000-4000-8000-000000000001"
BODY = json.dumps({"specialist_id": DEMO, "message": "What is the capital of France?"}).encode()
SERVERS = {
    "shipped": ("backend.main:app", []),
    "unguarded": ("bench._frontdoor_off:app", []),
    "h11": ("backend.main:app", ["--http", "h11"]),
}
# The load client POSTs: the chat route, which reads a body (the body limits' work too).
ENDPOINTS = {"/chat/send": BODY}


def start(children: Children, tmp: Path) -> dict[str, str]:
    """Start every server; their base URLs."""
    urls = {}
    for name, (app, extra) in SERVERS.items():
        port = free_port()
        children.start(name, [
            sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--no-access-log", "--log-level", "warning", *extra,
        ], child_env(
            ENVIRONMENT="test", AUTH_MODE="none", USER_HASH_SECRET="bench-secret",
            LOG_LEVEL="WARNING",
            DATABASE_URL=f"sqlite:///{tmp / f'{name}.db'}", USAGE_SPOOL_DIR=str(tmp / name),
            RATE_LIMIT_REQUESTS=str(10**12),
        ))
        urls[name] = f"http://127.0.0.1:{port}"
    for url in urls.values():
        wait_http(children, f"{url}/health")
    return urls


def point(url: str, body: bytes, pid: int, args: argparse.Namespace) -> dict[str, float]:
    """Requests/s and server CPU µs per request at `args.concurrency`."""
    headers = {"content-type": "application/json"} if body else {}
    before = cpu_seconds(pid)
    result: dict[str, Any] = run_load(
        url, body, concurrency=args.concurrency, duration=args.duration, headers=headers,
    )
    if result["errors"]:
        raise RuntimeError(f"{url}: {result['errors']} errors, first {result['first_error']}")
    cpu = cpu_seconds(pid) - before
    return {"rps": result["rps"], "cpu_us": 1e6 * cpu / max(1, result["requests"])}


def main() -> None:
    """Measure and print the table; the figures as JSON on the last line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    shares: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-frontdoor-") as tmp:
        children = Children(Path(tmp))
        try:
            urls = start(children, Path(tmp))
            for round_no in range(1, args.rounds + 1):
                order = list(SERVERS) if round_no % 2 else list(reversed(SERVERS))
                for path, body in ENDPOINTS.items():
                    got = {}
                    for name in order:
                        if round_no == 1:  # warm-up
                            point(urls[name] + path, body, children.pid(name), args)
                        got[name] = point(urls[name] + path, body, children.pid(name), args)
                        samples.setdefault((path, name), []).append(got[name])
                        print(f"  round {round_no} {path:11} {name:10} {got[name]['rps']:7.0f} "
                              f"req/s {got[name]['cpu_us']:6.0f} us CPU/req", flush=True)
                    for name in SERVERS:
                        shares.setdefault((path, name), []).append(
                            got[name]["rps"] / got["unguarded"]["rps"]
                        )
        finally:
            children.stop_all()
    table: dict[str, dict[str, float]] = {}
    print(f"\n{'endpoint':12}{'server':11}{'req/s':>9}{'CPU us/req':>12}{'of unguarded':>14}")
    for (path, name), points in samples.items():
        row = {
            "rps": statistics.median(p["rps"] for p in points),
            "cpu_us": statistics.median(p["cpu_us"] for p in points),
            "share": statistics.median(shares[(path, name)]),
        }
        table[f"{path} {name}"] = row
        print(f"{path:12}{name:11}{row['rps']:9.0f}{row['cpu_us']:12.0f}{row['share']:13.1%}")
    print(json.dumps(table))


if __name__ == "__main__":
    main()
