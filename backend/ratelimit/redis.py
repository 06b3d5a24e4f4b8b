"""The Redis token-bucket backend: one Lua script, the server's clock, shared by every worker.

Each request is one round trip: EVALSHA of `token_bucket.lua` with all of the request's
buckets, which reads TIME, refills and takes atomically, all or nothing. The script is
loaded once (SCRIPT LOAD at start-up) and called by its hash; a server that lost it
(restart, SCRIPT FLUSH, failover) answers NOSCRIPT and gets it again.

A dead or slow Redis never hangs a request: every call is bounded by `timeout`, redis-py's
own retries are off, and after a failure the store is not tried again for
`retry_interval` seconds (requests fail fast meanwhile). Connections are re-opened by the
pool when Redis answers again, so recovery needs no restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from backend.ratelimit.base import BackendUnavailable, Bucket, BucketState, RateDecision

log = logging.getLogger(__name__)

SCRIPT = (Path(__file__).with_name("token_bucket.lua")).read_text(encoding="utf-8")
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()

# Enough connections for a busy worker (each call holds one for ~0.1 ms); waiting for a free
# one counts against the same timeout as the call itself.
MAX_CONNECTIONS = 64


class RedisRateLimiter:
    """Token buckets in Redis hashes, shared by every process that uses the same prefix."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ratelimit:",
        timeout: float = 0.5,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # no hidden retries: the gate decides what happens
        )
        self._redis = Redis(connection_pool=self._pool)
        self._prefix = prefix
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._clock = clock
        self._down_until = 0.0

    async def start(self) -> None:
        """Load the script once; an unreachable Redis is only logged (requests will retry)."""
        try:
            async with asyncio.timeout(self._timeout):
                sha = await self._redis.script_load(SCRIPT)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("Redis unreachable at start-up (%s); rate limits will retry it", exc)
            return
        if sha != SCRIPT_SHA:  # pragma: no cover - would mean a different hash function
            raise RuntimeError(f"Redis hashed the rate-limit script as {sha}, not {SCRIPT_SHA}")

    async def acquire(self, buckets: Sequence[Bucket]) -> RateDecision:
        """Take one token from every bucket, or none, in one atomic script call."""
        if self._clock() < self._down_until:
            raise BackendUnavailable("Redis failed moments ago; not retried yet")
        keys = [self._prefix + bucket.key for bucket in buckets]
        args: list[int | float] = []
        for bucket in buckets:
            args += [bucket.capacity, bucket.window_seconds]
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._call(keys, args)
        except (RedisError, OSError, TimeoutError) as exc:
            await self._mark_down()
            raise BackendUnavailable(_describe(exc)) from exc
        allowed = reply[0] == 1
        states = [
            BucketState(bucket, float(level), allowed)
            for bucket, level in zip(buckets, reply[1:], strict=True)
        ]
        return RateDecision.from_states(states)

    async def close(self) -> None:
        """Close the client and every pooled connection."""
        await self._redis.aclose()
        await self._pool.disconnect()

    async def _call(self, keys: list[str], args: list[int | float]) -> list[Any]:
        try:
            reply = await self._redis.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
        except NoScriptError:
            # Redis restarted, failed over or flushed its scripts: load it again, once.
            await self._redis.script_load(SCRIPT)
            reply = await self._redis.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
        return list(reply)

    async def _mark_down(self) -> None:
        self._down_until = self._clock() + self._retry_interval
        # Drop every pooled connection: after a Redis restart each would otherwise fail once.
        await self._pool.disconnect(inuse_connections=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not isinstance(exc, RedisError):
        return "Redis did not answer in time"
    return f"{type(exc).__name__}: {exc}"
