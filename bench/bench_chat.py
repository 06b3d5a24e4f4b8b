"""Portal vs a plain passthrough, same fake upstream, same run: /chat/send and /chat/stream.

    python -m bench.bench_chat [--duration 5] [--rounds 1] [--chunks 20] [--chunk-delay 0]
                               [--concurrency 16] [--warmup 1] [--check]

Starts, each in its own process: the fake OpenAI upstream (backend/tests/fakes/openai_fake.py),
the portal (`python -m uvicorn backend.main:app`, one worker, limiter and usage records on)
and bench/passthrough.py (one worker). A separate load-client process then measures, for
each endpoint, requests/s at concurrency 16 and latency at concurrency 1 against the raw
upstream, the passthrough and the portal. Everything listens on 127.0.0.1 and is stopped
at the end, on Ctrl-C, or when the bench is killed.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import (
    Children,
    child_env,
    cpu_seconds,
    free_port,
    installed,
    run_load,
    sigterm_as_exit,
    wait_http,
)

API_KEY = "test-openai-key"  # what backend/tests/fakes/openai_fake.py accepts
SPECIALIST_ID = "b0000000-0000-4000-8000-00000000be01"
SPECIALIST = {
    "model": "gpt-4o-mini",
    "system_prompt": "You are a concise assistant for the staff of a finance company.",
    "temperature": 0.7,
    "max_output_tokens": 256,
}
HISTORY = [
    {"role": "user", "content": "What is EBITDA?"},
    {"role": "assistant", "content": "Earnings before interest, tax, depreciation, amortisation."},
]
MESSAGE = "And how does it differ from operating income?"
TARGETS = ("upstream", "passthrough", "portal")
ENDPOINTS = ("send", "stream")
TARGET_RATIO = 0.5


@dataclass(frozen=True)
class Target:
    """One thing to load: where each endpoint is, what to send, how a complete answer ends."""

    name: str
    pid: int  # the process that serves it, for its CPU time
    urls: dict[str, str]
    bodies: dict[str, bytes]
    tails: dict[str, bytes | None]
    headers: dict[str, str] = field(default_factory=dict)


Results = dict[tuple[str, str], dict[str, float]]


def chat_body() -> bytes:
    """The portal's (and the passthrough's) request body."""
    body = {"specialist_id": SPECIALIST_ID, "message": MESSAGE, "conversation_history": HISTORY}
    return json.dumps(body).encode()


def openai_body(*, stream: bool) -> bytes:
    """The Chat Completions body the portal sends upstream for `chat_body()`."""
    messages = [{"role": "system", "content": SPECIALIST["system_prompt"]}, *HISTORY,
                {"role": "user", "content": MESSAGE}]
    body: dict[str, Any] = {
        "model": SPECIALIST["model"], "messages": messages,
        "max_tokens": SPECIALIST["max_output_tokens"], "temperature": SPECIALIST["temperature"],
    }
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(body).encode()


def specialists_yaml() -> str:
    """A specialists file with the one OpenAI specialist the bench talks to (JSON is YAML)."""
    entry = {"id": SPECIALIST_ID, "name": "Bench", "provider": "openai", **SPECIALIST}
    return json.dumps({"specialists": [entry]})


def uvicorn_args(app: str, port: int) -> list[str]:
    """One worker, no access log: the same server settings for portal and passthrough."""
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--no-access-log", "--log-level", "warning"]


def start_all(
    children: Children, tmp: Path, chunks: int, chunk_delay: float = 0.0
) -> dict[str, Target]:
    """Start the fake, the portal and the passthrough; wait until each answers."""
    fake, portal, passthrough = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{fake}/v1"
    children.start("fake", [sys.executable, "-m", "bench.bench_chat", "fake", "--port", str(fake),
                            "--chunks", str(chunks), "--chunk-delay", str(chunk_delay)],
                   child_env())
    (tmp / "specialists.yaml").write_text(specialists_yaml())
    children.start("portal", uvicorn_args("backend.main:app", portal), child_env(
        ENVIRONMENT="development", OPENAI_BASE_URL=base, OPENAI_API_KEY=API_KEY,
        DATABASE_URL=f"sqlite:///{tmp / 'usage.db'}",
        SPECIALISTS_FILE=str(tmp / "specialists.yaml"),
        RATE_LIMIT_REQUESTS=str(10**12), RATE_LIMIT_WINDOW_SECONDS="3600", LOG_LEVEL="WARNING",
    ))
    children.start("passthrough", uvicorn_args("bench.passthrough:app", passthrough), child_env(
        OPENAI_BASE_URL=base, OPENAI_API_KEY=API_KEY, PASSTHROUGH_SPECIALIST=json.dumps(SPECIALIST),
    ))
    wait_http(children, f"http://127.0.0.1:{fake}/health")
    wait_http(children, f"http://127.0.0.1:{portal}/health")
    wait_http(children, f"http://127.0.0.1:{passthrough}/health")
    chat = {"send": chat_body(), "stream": chat_body()}
    return {
        "upstream": Target(
            "upstream", children.pid("fake"), {e: f"{base}/chat/completions" for e in ENDPOINTS},
            {"send": openai_body(stream=False), "stream": openai_body(stream=True)},
            {"send": None, "stream": b"data: [DONE]"}, {"Authorization": f"Bearer {API_KEY}"},
        ),
        "passthrough": Target(
            "passthrough", children.pid("passthrough"),
            {e: f"http://127.0.0.1:{passthrough}/chat/{e}" for e in ENDPOINTS},
            chat, {"send": None, "stream": b"data: [DONE]"},
        ),
        "portal": Target(
            "portal", children.pid("portal"),
            {e: f"http://127.0.0.1:{portal}/chat/{e}" for e in ENDPOINTS},
            chat, {"send": b'"request_id"', "stream": b'"is_final":true'},
        ),
    }


def load(target: Target, endpoint: str, concurrency: int, duration: float) -> dict[str, Any]:
    """One measurement point."""
    return run_load(
        target.urls[endpoint], target.bodies[endpoint], concurrency=concurrency,
        duration=duration, headers=target.headers, expect_tail=target.tails[endpoint],
    )


def point(target: Target, endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    """Requests/s and server CPU per request at full concurrency; latency at concurrency 1."""
    before = cpu_seconds(target.pid)
    busy = load(target, endpoint, args.concurrency, args.duration)
    cpu = cpu_seconds(target.pid) - before
    idle = load(target, endpoint, 1, args.duration)
    for run in (busy, idle):
        if run["first_error"]:
            print(f"  ! {target.name} {endpoint}: {run['errors']} errors, first: "
                  f"{run['first_error']}")
    return {
        "rps": busy["rps"], "cpu_us": 1e6 * cpu / max(1, busy["requests"]), "rps1": idle["rps"],
        "p50": idle["p50_ms"], "p95": idle["p95_ms"],
        "ok": busy["requests"] + idle["requests"], "errors": busy["errors"] + idle["errors"],
    }


def measure(
    targets: dict[str, Target], args: argparse.Namespace
) -> tuple[Results, Results, int, int]:
    """Every point, `args.rounds` times interleaved; medians of points and of per-round ratios.

    The ratios are taken within a round (portal and passthrough measured back to back), so
    a neighbour's burst of CPU use skews one round's pair, not the whole comparison.
    """
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    errors = answered = 0  # answered: the portal's successful requests, warm-ups included
    for round_no in range(1, args.rounds + 1):
        for endpoint in ENDPOINTS:
            got: dict[str, dict[str, float]] = {}
            for name in TARGETS:
                warm = {"requests": 0, "errors": 0}
                if round_no == 1 and args.warmup > 0:
                    warm = load(targets[name], endpoint, args.concurrency, args.warmup)
                got[name] = p = point(targets[name], endpoint, args)
                errors += int(p["errors"]) + warm["errors"]
                if name == "portal":
                    answered += int(p["ok"]) + warm["requests"]
                samples.setdefault((endpoint, name), []).append(p)
                print(f"  round {round_no} {endpoint:6} {name:11} {p['rps']:7.0f} req/s "
                      f"{p['cpu_us']:6.0f} us CPU/req @{args.concurrency}   "
                      f"p50 {p['p50']:6.2f} ms @1", flush=True)
            portal, passthrough = got["portal"], got["passthrough"]
            ratios.setdefault((endpoint, "rps"), []).append(
                portal["rps"] / max(passthrough["rps"], 1e-9)
            )
            ratios.setdefault((endpoint, "cpu"), []).append(
                passthrough["cpu_us"] / max(portal["cpu_us"], 1e-9)
            )
    medians = {
        key: {metric: statistics.median(p[metric] for p in points) for metric in points[0]}
        for key, points in samples.items()
    }
    ratio = {key: {"median": statistics.median(v), "min": min(v), "max": max(v)}
             for key, v in ratios.items()}
    return medians, ratio, errors, answered


def report(results: Results, ratios: Results, concurrency: int) -> list[str]:
    """Print the table, added latency and ratios; return the endpoints under target."""
    print(f"\n{'endpoint':9}{'target':13}{f'req/s @{concurrency}':>12}{'CPU us/req':>12}"
          f"{'req/s @1':>10}{'p50 ms @1':>11}{'p95 ms @1':>11}")
    for endpoint in ENDPOINTS:
        for name in TARGETS:
            r = results[(endpoint, name)]
            print(f"{endpoint:9}{name:13}{r['rps']:12.0f}{r['cpu_us']:12.0f}{r['rps1']:10.0f}"
                  f"{r['p50']:11.2f}{r['p95']:11.2f}")
    print("\nAdded latency at concurrency 1, ms (p50 / p95):")
    for endpoint in ENDPOINTS:
        up, pt, po = (results[(endpoint, n)] for n in TARGETS)
        print(f"  {endpoint:7} portal-passthrough {_delta(po, pt)}   "
              f"passthrough-upstream {_delta(pt, up)}   portal-upstream {_delta(po, up)}")
    print(f"\nPortal / passthrough at concurrency {concurrency}, median of rounds [min-max]"
          f" (target >= {TARGET_RATIO:.0%} of req/s):")
    under = []
    for endpoint in ENDPOINTS:
        rps, cpu = ratios[(endpoint, "rps")], ratios[(endpoint, "cpu")]
        verdict = "ok" if rps["median"] >= TARGET_RATIO else "UNDER TARGET"
        print(f"  /chat/{endpoint:7} req/s {rps['median']:6.1%} [{rps['min']:.0%}-{rps['max']:.0%}]"
              f"  {verdict:13} CPU-per-request ratio {cpu['median']:6.1%}")
        if rps["median"] < TARGET_RATIO:
            under.append(endpoint)
    return under


def _delta(a: dict[str, float], b: dict[str, float]) -> str:
    return f"{a['p50'] - b['p50']:+6.2f} / {a['p95'] - b['p95']:+6.2f}"


def usage_rows(db: Path) -> int:
    """Rows the portal's recorder wrote (read after the portal stopped and drained)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        count: int = conn.execute("SELECT count(*) FROM usage_log").fetchone()[0]
        return count


def serve_fake(port: int, chunks: int, chunk_delay: float) -> None:
    """Run the fake OpenAI upstream in this process until terminated."""
    from aiohttp import web

    from backend.tests.fakes.openai_fake import build_app
    from backend.tests.fakes.script import FakeState, RecordedRequest, Script

    class Discard(list[RecordedRequest]):
        # The fake records every request for tests; a benchmark would hoard millions.
        def append(self, item: RecordedRequest) -> None:
            pass

    words = [f" word{i}" for i in range(chunks)]
    script = Script(chunks=words, output_tokens=chunks, chunk_delay=chunk_delay)
    state = FakeState(script=script, requests=Discard())
    app = build_app(state, require_auth=True)

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def run(args: argparse.Namespace) -> int:
    """Start everything, measure, stop everything, print the report."""
    points = args.rounds * len(ENDPOINTS) * len(TARGETS)
    planned = points * 2 * (args.duration + 0.5) + len(ENDPOINTS) * len(TARGETS) * args.warmup
    pace = f"{args.chunk_delay * 1000:g} ms apart" if args.chunk_delay else "in one burst"
    print(f"bench_chat: {args.chunks} text chunks per stream {pace}, concurrency "
          f"{args.concurrency} and 1, {args.duration:g} s per point, {args.rounds} round(s), "
          f"about {math.ceil(planned)} s")
    loop = "uvloop" if installed("uvloop") else "asyncio"
    http = "httptools" if installed("httptools") else "h11"
    print(f"uvicorn: loop={loop}, http={http} (the same for portal and passthrough)")
    with tempfile.TemporaryDirectory(prefix="bench_chat_") as tmp_name, sigterm_as_exit():
        tmp = Path(tmp_name)
        children = Children(tmp)
        started = time.monotonic()
        try:
            targets = start_all(children, tmp, args.chunks, args.chunk_delay)
            results, ratios, errors, answered = measure(targets, args)
        finally:
            children.stop_all()
        rows = usage_rows(tmp / "usage.db")
    under = report(results, ratios, args.concurrency)
    if not args.chunk_delay:
        print("\nnote: the fake writes each stream in one burst, which the passthrough relays in"
              " about one read\nwhile the portal re-frames every event; --chunk-delay 0.0002"
              " paces it like a model.")
    print(f"\nusage rows written by the portal: {rows} (successful portal requests: {answered});"
          f" load errors: {errors}; wall time {time.monotonic() - started:.0f} s")
    return 1 if args.check and (under or errors) else 0


def main() -> None:
    """Command line: `python -m bench.bench_chat --help`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    fake = sub.add_parser("fake", help="(internal) serve the fake upstream")
    fake.add_argument("--port", type=int, required=True)
    fake.add_argument("--chunks", type=int, default=20)
    fake.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds, first round only")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; medians")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=20, help="text chunks per fake stream")
    parser.add_argument("--chunk-delay", type=float, default=0.0, metavar="SECONDS",
                        help="fake's pause before each stream frame (0: one burst)")
    parser.add_argument("--check", action="store_true", help="exit 1 if under target or errors")
    args = parser.parse_args()
    if args.command == "fake":
        serve_fake(args.port, args.chunks, args.chunk_delay)
        return
    try:
        sys.exit(run(args))
    except KeyboardInterrupt:  # `run` has stopped every child in its `finally` by now
        print("\ninterrupted; all bench processes stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
