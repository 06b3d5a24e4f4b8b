"""What observability costs: the portal with metrics off, on, and on with traces exported.

    python -m bench.bench_metrics [--duration 5] [--rounds 3] [--concurrency 16] [--settle 1]
                                  [--check]

Starts, each in its own process: the fake OpenAI upstream (as bench_chat does), a local
OTLP/HTTP sink that accepts spans and drops them, and three portals (one uvicorn worker
each, limiter and usage records on) that differ only in METRICS_ENABLED and
OTEL_EXPORTER_OTLP_ENDPOINT. The load client measures /chat/send and /chat/stream on each,
interleaved by round in a rotating order; the report gives each portal's req/s and server
CPU per request, and each variant's cost against metrics off within its round (target:
metrics cost at most 5 %).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._common import (
    Children,
    child_env,
    free_port,
    paired_cpu,
    sigterm_as_exit,
    wait_http,
)
from bench.bench_chat import (
    API_KEY,
    ENDPOINTS,
    MESSAGE,
    Target,
    chat_body,
    point,
    specialists_yaml,
    uvicorn_args,
)

VARIANTS = {
    "metrics_off": {"METRICS_ENABLED": "false"},
    "metrics_on": {"METRICS_ENABLED": "true"},
    "metrics+traces": {"METRICS_ENABLED": "true"},  # plus the sink's endpoint, below
}
TARGET_COST = 0.05


def serve_sink(port: int) -> None:
    """Accept OTLP/HTTP trace exports and drop them (a collector that keeps up)."""
    from aiohttp import web

    async def traces(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def start_all(children: Children, tmp: Path, chunks: int) -> dict[str, Target]:
    """The fake, the sink and one portal per variant; wait until each answers."""
    fake, sink = free_port(), free_port()
    children.start("fake", [sys.executable, "-m", "bench.bench_chat", "fake", "--port",
                            str(fake), "--chunks", str(chunks)], child_env())
    children.start("sink", [sys.executable, "-m", "bench.bench_metrics", "sink", "--port",
                            str(sink)], child_env())
    (tmp / "specialists.yaml").write_text(specialists_yaml())
    targets: dict[str, Target] = {}
    for name, extra in VARIANTS.items():
        port = free_port()
        env = {
            "ENVIRONMENT": "development", "OPENAI_BASE_URL": f"http://127.0.0.1:{fake}/v1",
            "OPENAI_API_KEY": API_KEY, "DATABASE_URL": f"sqlite:///{tmp / name}.db",
            "USAGE_SPOOL_DIR": str(tmp / f"spool-{name}"),
            "SPECIALISTS_FILE": str(tmp / "specialists.yaml"),
            "RATE_LIMIT_REQUESTS": str(10**12), "LOG_LEVEL": "WARNING", **extra,
        }
        if name == "metrics+traces":
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink}"
        children.start(name, uvicorn_args("backend.main:app", port), child_env(**env))
        targets[name] = Target(
            name, children.pid(name), {e: f"http://127.0.0.1:{port}/chat/{e}" for e in ENDPOINTS},
            {"send": chat_body(), "stream": chat_body()},
            {"send": b'"request_id"', "stream": b'"is_final":true'},
        )
    wait_http(children, f"http://127.0.0.1:{fake}/health")
    wait_http(children, f"http://127.0.0.1:{sink}/health")
    for target in targets.values():
        wait_http(children, target.urls["send"].replace("/chat/send", "/health"))
    return targets


def run(args: argparse.Namespace) -> int:
    """Measure every variant, `args.rounds` times interleaved; print medians and costs."""
    print(f"bench_metrics: {args.duration:g} s per point, concurrency {args.concurrency}, "
          f"{args.rounds} round(s); the machine may be shared: read the CPU column first")
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    cost: dict[tuple[str, str], list[float]] = {}
    errors = 0
    with tempfile.TemporaryDirectory(prefix="bench_metrics_") as tmp_name, sigterm_as_exit():
        children = Children(Path(tmp_name))
        try:
            targets = start_all(children, Path(tmp_name), args.chunks)
            for round_no in range(1, args.rounds + 1):
                for endpoint in ENDPOINTS:
                    got = {}
                    # Rotate the order each round, so every variant takes every position
                    # equally often (the one after a busy variant shares the cores with its
                    # leftover work: usage batches, span exports).
                    names = list(VARIANTS)
                    shift = (round_no - 1) % len(names)
                    for name in names[shift:] + names[:shift]:
                        time.sleep(args.settle)
                        got[name] = p = point(targets[name], endpoint, args)
                        errors += int(p["errors"])
                        samples.setdefault((endpoint, name), []).append(p)
                        print(f"  round {round_no} {endpoint:6} {name:15} {p['rps']:7.0f} req/s"
                              f" {p['cpu_us']:6.0f} us CPU/req", flush=True)
                    off = got["metrics_off"]
                    for name in ("metrics_on", "metrics+traces"):
                        cost.setdefault((endpoint, name), []).append(
                            1 - got[name]["rps"] / max(off["rps"], 1e-9)
                        )
                        cost.setdefault((endpoint, name + " cpu"), []).append(
                            got[name]["cpu_us"] / max(off["cpu_us"], 1e-9) - 1
                        )
        finally:
            children.stop_all()
    return report(samples, cost, errors, args)


def report(
    samples: dict[tuple[str, str], list[dict[str, float]]],
    cost: dict[tuple[str, str], list[float]], errors: int, args: argparse.Namespace,
) -> int:
    """The table of medians and the cost of each variant against metrics off."""
    print(f"\n{'endpoint':9}{'portal':16}{f'req/s @{args.concurrency}':>12}{'CPU us/req':>12}")
    for endpoint in ENDPOINTS:
        for name in VARIANTS:
            points = samples[(endpoint, name)]
            rps = statistics.median(p["rps"] for p in points)
            cpu = statistics.median(p["cpu_us"] for p in points)
            print(f"{endpoint:9}{name:16}{rps:12.0f}{cpu:12.0f}")
    print(f"\nCost against metrics_off, median of rounds [min..max]: req/s lost, and extra"
          f" server CPU per request (target: metrics_on <= {TARGET_COST:.0%}):")
    over = False
    for endpoint in ENDPOINTS:
        for name in ("metrics_on", "metrics+traces"):
            lost, cpu = cost[(endpoint, name)], cost[(endpoint, name + " cpu")]
            verdict = ""
            if name == "metrics_on":
                # CPU per request is the figure a shared machine disturbs least.
                verdict = "ok" if statistics.median(cpu) <= TARGET_COST else "OVER TARGET"
                over = over or verdict != "ok"
            print(f"  /chat/{endpoint:7}{name:16} req/s {_spread(lost)}   CPU/req "
                  f"{_spread(cpu)} {verdict}")
    report_paired(paired(args.blocks, args.per_block))
    per_request = hook_cost_us()
    print(f"\nthe metrics hooks of one streamed request, timed in process: {per_request:.1f} us"
          f" (the portal's whole CPU per request is in the table above)")
    print(f"load errors: {errors}")
    return 1 if args.check and (over or errors) else 0


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):+7.1%} [{min(values):+.1%}..{max(values):+.1%}]"


def hook_cost_us(n: int = 20_000) -> float:
    """Microseconds the metrics calls of one streamed request take (all of them, no I/O)."""
    from backend.observability.labels import LabelSets
    from backend.observability.metrics import PortalMetrics

    spec = "b0000000-0000-4000-8000-00000000be01"
    metrics = PortalMetrics(
        LabelSets(specialists=[spec], providers=["openai"], models=["gpt-4o-mini"])
    )
    started = time.perf_counter()
    for _ in range(n):
        metrics.attempt("openai", "gpt-4o-mini", "ok")
        metrics.stream_opened()
        metrics.first_token("stream", spec, "openai", "gpt-4o-mini", 0.12)
        metrics.stream_closed()
        metrics.chat_finished(
            "stream", spec, "openai", "gpt-4o-mini", outcome="ok", seconds=0.5,
            input_tokens=40, output_tokens=20, cached_input_tokens=0, cost_usd=0.0001,
        )
    return (time.perf_counter() - started) / n * 1e6


def paired(blocks: int, per_block: int) -> dict[str, list[float]]:
    """CPU per request of two apps in one process, metrics on and off, in alternating blocks
    (see `paired_cpu`)."""
    return paired_cpu(
        {"metrics_off": {"metrics_enabled": False}, "metrics_on": {"metrics_enabled": True}},
        blocks=blocks, per_block=per_block, message=MESSAGE, endpoints=ENDPOINTS,
    )


def report_paired(costs: dict[str, list[float]]) -> None:
    """Median CPU per request of each side and the median of the per-block ratios."""
    print("\nin one process, alternating blocks (demo provider, CPU us per request):")
    for endpoint in ENDPOINTS:
        off, on = costs[f"{endpoint} metrics_off"], costs[f"{endpoint} metrics_on"]
        extra = [b / a - 1 for a, b in zip(off, on, strict=True)]
        print(f"  /chat/{endpoint:7} off {statistics.median(off):6.0f}   on "
              f"{statistics.median(on):6.0f}   metrics cost {_spread(extra)}")


def main() -> None:
    """Command line: `python -m bench.bench_metrics --help`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    sink = sub.add_parser("sink", help="(internal) serve the OTLP sink")
    sink.add_argument("--port", type=int, required=True)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=20, help="text chunks per fake stream")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds of quiet before each point (background work drains)")
    parser.add_argument("--blocks", type=int, default=20, help="paired in-process blocks")
    parser.add_argument("--per-block", type=int, default=200, help="requests per block")
    parser.add_argument("--check", action="store_true", help="exit 1 if over target or errors")
    args = parser.parse_args()
    if args.command == "sink":
        serve_sink(args.port)
        return
    try:
        sys.exit(run(args))
    except KeyboardInterrupt:
        print("\ninterrupted; all bench processes stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
