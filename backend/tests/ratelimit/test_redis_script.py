"""token_bucket.lua run directly on the real Redis: server clock, TTL, fractions, atomicity."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from backend.ratelimit.redis import SCRIPT, SCRIPT_SHA


async def run(redis: Redis, keys: list[str], *limits: tuple[int, float]) -> list[str]:
    args = [value for limit in limits for value in limit]
    reply = await redis.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
    return [str(item) for item in reply]


async def server_time(redis: Redis) -> float:
    seconds, micros = await redis.time()
    return seconds + micros / 1_000_000


@pytest.fixture
async def redis(redis_client: Redis) -> Redis:
    assert await redis_client.script_load(SCRIPT) == SCRIPT_SHA  # the hash we call it by
    return redis_client


async def test_a_take_stamps_the_server_clock_and_a_ttl_of_twice_the_refill_time(
    redis: Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}a"
    before = await server_time(redis)
    assert await run(redis, [key], (60, 3600)) == ["1", "59"]
    after = await server_time(redis)
    stored = await redis.hgetall(key)
    assert stored["tokens"] == "59"
    assert before <= float(stored["ts"]) <= after  # Redis's TIME, to the microsecond
    ttl_ms = await redis.pttl(key)
    assert 7_199_000 <= ttl_ms <= 7_200_000  # 2 x 3600 s


async def test_refill_is_computed_from_the_servers_clock_not_the_callers(
    redis: Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}b"
    # Empty, stamped 30 s ago by the server's own clock: 30 s at 1 token/10 s = 3 tokens.
    now = await server_time(redis)
    await redis.hset(key, mapping={"tokens": "0", "ts": repr(now - 30)})
    allowed, level = await run(redis, [key], (10, 100))
    assert allowed == "1"
    assert float(level) == pytest.approx(2.0, abs=0.01)


async def test_fractional_tokens_survive_the_round_trip(redis: Redis, redis_prefix: str) -> None:
    key = f"{redis_prefix}c"
    now = await server_time(redis)
    await redis.hset(key, mapping={"tokens": "0.25", "ts": repr(now)})
    allowed, level = await run(redis, [key], (1, 3600))
    # Refused, and the quarter token is still there, not truncated to 0 by Redis.
    assert allowed == "0"
    assert 0.25 <= float(level) < 0.26
    await redis.hset(key, mapping={"tokens": "1.75", "ts": repr(now)})
    allowed, level = await run(redis, [key], (2, 3600))
    assert allowed == "1" and 0.75 <= float(level) < 0.76
    assert 0.75 <= float(await redis.hget(key, "tokens") or "nan") < 0.76


async def test_all_or_nothing_across_every_key_of_the_request(
    redis: Redis, redis_prefix: str
) -> None:
    ip, user = f"{redis_prefix}ip", f"{redis_prefix}user"
    assert (await run(redis, [ip, user], (5, 60), (1, 60)))[0] == "1"
    allowed, ip_level, user_level = await run(redis, [ip, user], (5, 60), (1, 60))
    assert allowed == "0" and float(user_level) < 1
    # The refused call wrote nothing: the IP bucket still holds 4 (plus a sliver of refill).
    assert 4 <= float(await redis.hget(ip, "tokens") or "nan") < 4.1
    assert 4 <= float(ip_level) < 4.1


async def test_a_missing_bucket_is_full_and_a_refused_one_is_not_created(
    redis: Redis, redis_prefix: str
) -> None:
    full, empty = f"{redis_prefix}full", f"{redis_prefix}empty"
    now = await server_time(redis)
    await redis.hset(empty, mapping={"tokens": "0", "ts": repr(now)})
    assert (await run(redis, [full, empty], (3, 60), (3, 60)))[:2] == ["0", "3"]
    assert not await redis.exists(full)


async def test_a_clock_stepped_back_does_not_drain_the_bucket(
    redis: Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}d"
    now = await server_time(redis)
    await redis.hset(key, mapping={"tokens": "5", "ts": repr(now + 1000)})  # "from the future"
    allowed, level = await run(redis, [key], (10, 60))
    assert allowed == "1" and float(level) == pytest.approx(4.0)
