"""Two separate server processes sharing the real Redis admit exactly the limit, in total."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from backend.tests.ratelimit.servers import burst, server_env, uvicorn_servers


async def test_1000_concurrent_requests_over_2_processes_admit_exactly_60(
    tmp_path: Path, redis_url: str, redis_prefix: str, redis_client: Redis
) -> None:
    shared = {
        "REDIS_URL": redis_url,
        "RATE_LIMIT_REDIS_PREFIX": redis_prefix,
        "RATE_LIMIT_REQUESTS": "60",
        "RATE_LIMIT_WINDOW_SECONDS": "3600",
    }
    envs = [server_env(tmp_path, name, **shared) for name in ("one", "two")]
    async with uvicorn_servers(envs) as urls:
        results = await burst(urls, 1000)
        by_server = [[s for i, (s, _) in enumerate(results) if i % 2 == n] for n in (0, 1)]
        statuses = [status for status, _ in results]
        assert statuses.count(200) == 60 and statuses.count(429) == 940  # (inside: logs on failure)
    # Both processes answered, and refused (one may have admitted all 60 before the other
    # got any): the limit is shared, not per process, or the total would be 120.
    assert all(len(served) == 500 and 429 in served for served in by_server)
    admitted = sorted(int(h["x-ratelimit-remaining"]) for s, h in results if s == 200)
    assert admitted == list(range(60))  # each token handed out exactly once across processes
    assert await redis_client.exists(f"{redis_prefix}ip:127.0.0.1")
    assert 7_100_000 < await redis_client.pttl(f"{redis_prefix}ip:127.0.0.1") <= 7_200_000
