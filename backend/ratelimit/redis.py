"""The Redis token-bucket backend: one Lua script, the server's clock, shared by every worker.

Each request's buckets go to Redis in one EVALSHA of `token_bucket.lua`, which reads TIME,
refills and takes atomically, all or nothing. The script is loaded once (SCRIPT LOAD at
start-up) and called by its hash; a server that lost it (restart, SCRIPT FLUSH, failover)
answers NOSCRIPT and gets it again.

Requests that arrive while a call is in flight are sent together, as one pipeline, when it
returns: one round trip each, and under load one round trip for many. This is what keeps
the limit exact when a worker is saturated: with one connection per request, requests
would queue for connections until their timeouts fired and they failed open, at exactly
the moment the limit matters. Every script call is still its own atomic EVALSHA.

A dead or slow Redis never hangs a request: each round trip is bounded by `timeout`,
redis-py's own retries are off, and after a failure Redis is not tried again for
`retry_interval` seconds (requests fail fast meanwhile). Connections are re-opened when
Redis answers again, so recovery needs no restart.

The bound is on Redis, not on our own event loop: a saturated worker can take longer than
`timeout` to get round to sending a batch, or to reading a reply that arrived long ago, and
a plain `asyncio.timeout` would then fail open while Redis is fine. So the clock starts
when the batch is sent, and when the time is up the round trip gets a few more loop
iterations to read what is already in the socket before Redis is declared unreachable;
when Redis is really down, those iterations cost microseconds.
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
from redis.exceptions import NoScriptError, RedisError, ResponseError

from backend.ratelimit.base import BackendUnavailable, Bucket, BucketState, RateDecision

log = logging.getLogger(__name__)

SCRIPT = (Path(__file__).with_name("token_bucket.lua")).read_text(encoding="utf-8")
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()

# One batch is in flight at a time, so two connections suffice (one spare for SCRIPT LOAD).
MAX_CONNECTIONS = 4
# Bounds one round trip's size, so one batch cannot delay the next for long.
MAX_BATCH = 512
# Loop iterations a late round trip gets, after `timeout`, to read a reply already received.
GRACE_ITERATIONS = 8
# redis-py's own socket timeouts, as multiples of `timeout`: a backstop for a wedged
# connection only; the sender's loop-aware bound is the one that normally applies.
BACKSTOP = 10

Call = tuple[list[str], list[int | float], "asyncio.Future[list[Any]]"]


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
            socket_timeout=BACKSTOP * timeout,
            socket_connect_timeout=BACKSTOP * timeout,
            retry=Retry(NoBackoff(), 0),  # no hidden retries: the gate decides what happens
        )
        self._redis = Redis(connection_pool=self._pool)
        self._prefix = prefix
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._clock = clock
        self._down_until = 0.0
        self._pending: list[Call] = []
        self._in_flight: list[Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the script once; an unreachable Redis is only logged (requests will retry)."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.script_load(SCRIPT)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("Redis unreachable at start-up (%s); rate limits will retry it", exc)

    async def ping(self) -> None:
        """One PING within the call bound (readiness); raises when Redis does not answer."""
        async with asyncio.timeout(self._timeout):
            await self._redis.ping()

    async def acquire(self, buckets: Sequence[Bucket]) -> RateDecision:
        """Take one token from every bucket, or none, in one atomic script call."""
        if self._clock() < self._down_until:
            raise BackendUnavailable("Redis failed moments ago; not retried yet")
        args: list[int | float] = []
        for bucket in buckets:
            args += [bucket.capacity, bucket.window_seconds]
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append(([self._prefix + b.key for b in buckets], args, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_pending())
        try:
            # The sender bounds every round trip; this is a backstop against a bug only.
            async with asyncio.timeout(BACKSTOP * self._timeout):
                reply = await future
        except TimeoutError as exc:
            raise BackendUnavailable(
                f"no answer within {BACKSTOP * self._timeout:g} s (backstop)"
            ) from exc
        allowed = reply[0] == 1
        states = [
            BucketState(bucket, float(level), allowed)
            for bucket, level in zip(buckets, reply[1:], strict=True)
        ]
        return RateDecision.from_states(states)

    async def close(self) -> None:
        """Stop sending, then close the client and every pooled connection."""
        if self._sender is not None:
            self._sender.cancel()
        closing = BackendUnavailable("the rate limiter is closing")
        self._fail(self._in_flight + self._pending, closing)
        self._pending = []
        await self._redis.aclose()
        await self._pool.disconnect()

    async def _send_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            batch = [call for call in batch if not call[2].done()]  # waiters that gave up
            self._in_flight = batch
            if self._clock() < self._down_until:
                self._fail(batch, BackendUnavailable("Redis failed moments ago"))
                continue
            try:
                replies = await self._bounded(batch)
            except (RedisError, OSError, TimeoutError) as exc:
                await self._mark_down()
                self._fail(batch, BackendUnavailable(_describe(exc)), cause=exc)
                continue
            except Exception as exc:  # a bug: never leave waiters hanging on it
                log.exception("rate-limit batch failed")
                self._fail(batch, BackendUnavailable(_describe(exc)), cause=exc)
                continue
            for (_, _, future), reply in zip(batch, replies, strict=True):
                if not future.done():
                    future.set_result(reply)

    async def _bounded(self, batch: list[Call]) -> list[list[Any]]:
        """The batch's replies, or TimeoutError once Redis has had `timeout` seconds since
        the batch was sent and the loop a few more turns to read what it already answered
        (see the module docstring)."""
        sending = asyncio.Event()
        task = asyncio.create_task(self._round_trip(batch, sending))
        try:
            # The clock starts when the round trip runs: on a busy loop that can be late.
            await sending.wait()
            started = time.monotonic()
            await asyncio.wait({task}, timeout=self._timeout)
            for _ in range(GRACE_ITERATIONS):
                if task.done():
                    break
                await asyncio.sleep(0)
            if not task.done():
                raise TimeoutError(f"no reply within {time.monotonic() - started:.3f} s")
            return task.result()
        finally:
            if not task.done():
                task.cancel()

    async def _round_trip(self, batch: list[Call], sending: asyncio.Event) -> list[list[Any]]:
        sending.set()  # from here the batch goes out at once (unless it must reconnect first)
        replies = await self._pipeline(batch)
        lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if lost:
            # Redis restarted, failed over or flushed its scripts: NOSCRIPT means the script
            # did not run, so loading it and sending those calls again takes nothing twice.
            await self._redis.script_load(SCRIPT)
            for i, reply in zip(lost, await self._pipeline([batch[i] for i in lost]), strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [list(reply) for reply in replies]

    async def _pipeline(self, batch: list[Call]) -> list[Any]:
        if len(batch) == 1:  # the common case when idle; a redis-py pipeline costs ~80 µs more
            keys, args, _ = batch[0]
            try:
                return [await self._redis.evalsha(SCRIPT_SHA, len(keys), *keys, *args)]
            except ResponseError as exc:
                return [exc]  # as a pipeline reports it: NOSCRIPT is handled by the caller
        async with self._redis.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                pipe.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def _mark_down(self) -> None:
        self._down_until = self._clock() + self._retry_interval
        # Drop every pooled connection: after a Redis restart each would otherwise fail once.
        await self._pool.disconnect(inuse_connections=True)

    @staticmethod
    def _fail(batch: list[Call], error: Exception, cause: BaseException | None = None) -> None:
        for _, _, future in batch:
            if not future.done():
                failure = BackendUnavailable(*error.args)
                failure.__cause__ = cause
                future.set_exception(failure)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not isinstance(exc, RedisError):
        return f"Redis did not answer in time ({exc})"
    return f"{type(exc).__name__}: {exc}"
