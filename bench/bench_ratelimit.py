"""What the rate limiter costs: per request (in-process and Redis) and in portal requests/s.

    python -m bench.bench_ratelimit [--duration 5] [--redis-url redis://127.0.0.1:6379/0]

1. The limiter alone, in this process: the time of one `RateLimits.decide` (client address,
   policy, IP + user buckets, one take), sequentially, on the memory backend and on Redis;
   and on Redis with 64 requests in flight, where concurrent calls share round trips.
2. The portal: `python -m uvicorn backend.main:app`, one worker, the demo specialist (no
   upstream), a capacity so large that nothing is refused, driven by a separate load-client
   process at concurrency 16 for `--duration` seconds per point: once with the memory
   backend, once with Redis. CPU seconds per request of the server process are reported too
   (they do not depend on what else the machine is doing).

Redis points are skipped when Redis is unreachable. Every child process is stopped at the
end, on Ctrl-C, or if the bench is killed; the bench's Redis keys are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.ratelimit.gate import RateLimits
from backend.ratelimit.memory import MemoryRateLimiter
from backend.ratelimit.policy import Limit, build_policy
from backend.ratelimit.redis import RedisRateLimiter
from bench._common import Children, child_env, cpu_seconds, free_port, run_load, wait_http

DEMO = "00000000-0000-4000-8000-000000000001"
BODY = json.dumps({"specialist_id": DEMO, "message": "What is EBITDA?"}).encode()
HUGE = 1_000_000_000  # a capacity nothing in this bench can exhaust
USER = "f" * 64  # a user hash, so every request takes from two buckets, as in production


def _gate(limiter: Any) -> RateLimits:
    policy = build_policy(ip=Limit(HUGE, 3600), user=Limit(HUGE, 3600), user_overrides={},
                          specialist_overrides={})
    return RateLimits(limiter, policy)


async def _sequential(gate: RateLimits, count: int) -> float:
    """Microseconds per decision, one at a time."""
    started = time.perf_counter()
    for i in range(count):
        decision = await gate.decide(peer=f"10.0.{i % 250}.1", user=USER)
        assert decision.allowed and not decision.unavailable
    return (time.perf_counter() - started) / count * 1e6


async def _concurrent(gate: RateLimits, count: int, in_flight: int) -> float:
    """Microseconds per decision with `in_flight` requests waiting at any time."""
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            decision = await gate.decide(peer=f"10.1.{i % 250}.1", user=USER)
            assert decision.allowed and not decision.unavailable

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return (time.perf_counter() - started) / count * 1e6


async def _redis_up(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def _delete_prefix(url: str, prefix: str) -> None:
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def limiter_costs(redis_url: str | None) -> dict[str, float]:
    """µs per request of the limiter alone, per backend."""
    costs = {"memory": await _sequential(_gate(MemoryRateLimiter()), 200_000)}
    if redis_url:
        prefix = f"bench:{uuid.uuid4().hex}:"
        limiter = RedisRateLimiter(redis_url, prefix=prefix)
        await limiter.start()
        try:
            gate = _gate(limiter)
            await _sequential(gate, 500)  # warm the connection and the script cache
            costs["redis"] = await _sequential(gate, 5_000)
            costs["redis_64_in_flight"] = await _concurrent(gate, 20_000, 64)
        finally:
            await limiter.close()
            await _delete_prefix(redis_url, prefix)
    return costs


def portal_rps(backend: str, redis_url: str | None, args: argparse.Namespace) -> dict[str, Any]:
    """Requests/s of /chat/send on one worker with `backend`, and server CPU per request."""
    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as tmp:
        port = free_port()
        settings = {
            "ENVIRONMENT": "test", "AUTH_MODE": "none", "USER_HASH_SECRET": "bench-secret",
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": f"sqlite:///{Path(tmp) / 'usage.db'}",
            "USAGE_SPOOL_DIR": str(Path(tmp) / "spool"),
            "RATE_LIMIT_REQUESTS": str(HUGE), "RATE_LIMIT_BACKEND": backend,
            "RATE_LIMIT_REDIS_PREFIX": f"bench:{uuid.uuid4().hex}:",
        }
        if redis_url:
            settings["REDIS_URL"] = redis_url
        children = Children(Path(tmp))
        try:
            children.start(
                "portal",
                [sys.executable, "-m", "uvicorn", "backend.main:app", "--port", str(port),
                 "--workers", "1", "--log-level", "warning", "--no-access-log"],
                child_env(**settings),
            )
            base = f"http://127.0.0.1:{port}"
            wait_http(children, f"{base}/health")
            url = f"{base}/chat/send"
            headers = {"X-User-Email": "bench@example.com"}
            run_load(url, BODY, concurrency=args.concurrency, duration=1.0, headers=headers)
            before = cpu_seconds(children.pid("portal"))
            result = run_load(url, BODY, concurrency=args.concurrency, duration=args.duration,
                              headers=headers)
            cpu = cpu_seconds(children.pid("portal")) - before
        finally:
            children.stop_all()
            if redis_url:
                asyncio.run(_delete_prefix(redis_url, settings["RATE_LIMIT_REDIS_PREFIX"]))
    result["cpu_ms_per_request"] = cpu / max(1, result["requests"]) * 1000
    return result


def main() -> None:
    """Measure, print a table, and print the figures as JSON on the last line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per portal point")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    redis_url = args.redis_url if asyncio.run(_redis_up(args.redis_url)) else None
    if redis_url is None:
        print(f"Redis unreachable at {args.redis_url}: Redis points skipped", file=sys.stderr)

    costs = asyncio.run(limiter_costs(redis_url))
    print("limiter cost per request (decide: address, policy, IP + user buckets, one take)")
    for name, micros in costs.items():
        print(f"  {name:<20} {micros:8.1f} µs")

    portal = {"memory": portal_rps("memory", None, args)}
    if redis_url:
        portal["redis"] = portal_rps("redis", redis_url, args)
    print(f"portal /chat/send, demo specialist, 1 worker, concurrency {args.concurrency}")
    for name, point in portal.items():
        print(f"  {name:<8} {point['rps']:8.0f} req/s   p50 {point['p50_ms']:6.2f} ms   "
              f"p99 {point['p99_ms']:6.2f} ms   server CPU {point['cpu_ms_per_request']:.3f} "
              f"ms/req   errors {point['errors']}")
    print(json.dumps({"limiter_us": costs, "portal": portal}))
    if any(point["errors"] for point in portal.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
