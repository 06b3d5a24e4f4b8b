"""RedisRateLimiter on the real Redis: semantics, NOSCRIPT, bounded waits, reconnecting."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from backend.ratelimit.base import BackendUnavailable, Bucket
from backend.ratelimit.redis import RedisRateLimiter
from backend.tests.support import silent_server


class Relay:
    """A TCP relay in front of Redis that the test can cut and restore, on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()
        await self.server.wait_closed()
        await asyncio.sleep(0)  # let the transports finish closing

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def bucket(key: str, capacity: int = 3, window: float = 30) -> Bucket:
    return Bucket(key, "ip", capacity, window)


@pytest.fixture
async def limiter(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisRateLimiter]:
    limiter = RedisRateLimiter(redis_url, prefix=redis_prefix)
    await limiter.start()
    yield limiter
    await limiter.close()


async def test_same_semantics_as_in_process(
    limiter: RedisRateLimiter, redis_client: Redis, redis_prefix: str
) -> None:
    decisions = [await limiter.acquire([bucket("ip:a")]) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[-1].retry_after == pytest.approx(10, abs=0.1)  # a token every 10 s
    assert decisions[-1].headers()[-1] == (b"retry-after", b"10")
    assert await redis_client.exists(f"{redis_prefix}ip:a")


async def test_both_keys_in_one_call_and_the_stricter_reported(limiter: RedisRateLimiter) -> None:
    ip, user = bucket("ip:b", capacity=10), Bucket("user:h", "user", 1, 60)
    first = await limiter.acquire([ip, user])
    assert first.allowed and first.key_kind == "user"
    refused = await limiter.acquire([ip, user])
    assert not refused.allowed and refused.key_kind == "user"
    assert (await limiter.acquire([ip])).remaining == 8  # the refused call took nothing


async def test_a_flushed_script_is_loaded_again(
    limiter: RedisRateLimiter, redis_client: Redis
) -> None:
    assert (await limiter.acquire([bucket("ip:c")])).allowed
    await redis_client.script_flush()
    assert (await limiter.acquire([bucket("ip:c")])).remaining == 1


async def test_concurrent_takes_admit_exactly_the_capacity(limiter: RedisRateLimiter) -> None:
    decisions = await asyncio.gather(
        *(limiter.acquire([bucket("ip:d", capacity=60, window=3600)]) for _ in range(1000))
    )
    admitted = [d for d in decisions if d.allowed]
    assert len(admitted) == 60
    assert sorted(d.remaining for d in admitted) == list(range(60))


async def test_a_hung_redis_costs_one_bounded_wait_then_fails_fast() -> None:
    async with silent_server() as port:
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", timeout=0.2)
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable, match="in time"):
                await limiter.acquire([bucket("ip:e")])
            assert time.monotonic() - started < 1.0
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                await limiter.acquire([bucket("ip:e")])
            assert time.monotonic() - started < 0.05  # not retried within the retry interval
        finally:
            await limiter.close()


async def test_reconnects_by_itself_when_redis_comes_back(
    redis_url: str, redis_prefix: str
) -> None:
    target = urlsplit(redis_url)
    relay = Relay((target.hostname or "127.0.0.1", target.port or 6379))
    await relay.start()
    limiter = RedisRateLimiter(
        f"redis://127.0.0.1:{relay.port}/0", prefix=redis_prefix, timeout=0.5,
        retry_interval=0.05,
    )
    try:
        assert (await limiter.acquire([bucket("ip:f")])).remaining == 2
        await relay.stop()
        with pytest.raises(BackendUnavailable):
            await limiter.acquire([bucket("ip:f")])
        await relay.start()
        await asyncio.sleep(0.06)
        # The same pool, no restart: the bucket kept its state in Redis meanwhile.
        assert (await limiter.acquire([bucket("ip:f")])).remaining == 1
    finally:
        await limiter.close()
        await relay.stop()
