"""The usage recorder: requests hand records to a bounded queue; one task writes batches.

Nothing on the request path waits for the database: `record()` is a non-blocking put, and
a full queue spills to the durable spool instead of blocking or dropping. The writer task
inserts batches (by size, or after a short linger) in one transaction each; when a batch
fails or the database is unreachable the batch goes to the spool, and the spool is replayed
in order, with backoff, until the database takes it. While the spool holds records, new
batches go behind them, so the database receives records in the order they were spooled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config.settings import Settings
from backend.observability.metrics import NULL_METRICS, PortalMetrics
from backend.observability.safe_text import one_line
from backend.usage.record import UsageRecord
from backend.usage.spool import Segment, Spool
from backend.usage.store import insert_batch, is_row_error

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class RecorderConfig:
    """Queue, batching and retry knobs (from settings in the app)."""

    max_queue: int = 10_000
    batch_size: int = 200
    flush_interval: float = 0.2
    write_timeout: float = 10.0
    retry_initial: float = 0.5
    retry_max: float = 30.0
    replay_batch: int = 1_000
    drain_timeout: float = 15.0


@dataclass(slots=True)
class RecorderCounters:
    """Totals since start-up; `lost` is records neither the database nor the spool took."""

    written: int = 0
    replayed: int = 0
    duplicates: int = 0
    spooled: int = 0
    spilled: int = 0
    rejected: int = 0
    lost: int = 0


@dataclass(frozen=True, slots=True)
class RecorderStatus:
    """What GET /usage/status shows."""

    database: str
    last_error: str | None
    queue_depth: int
    queue_capacity: int
    spool_records: int
    spool_bytes: int
    spool_dir: str
    counters: RecorderCounters = field(default_factory=RecorderCounters)


class UsageRecorder:
    """Queue, background writer and spool: every record ends in the database exactly once."""

    def __init__(
        self, engine: AsyncEngine, spool: Spool, config: RecorderConfig,
        metrics: PortalMetrics = NULL_METRICS,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._spool = spool
        self._config = config
        self._queue: asyncio.Queue[UsageRecord | None] = asyncio.Queue(config.max_queue)
        self._overflow: list[UsageRecord] = []
        self._overflow_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False
        self._db_ok = True
        self._last_error: str | None = None
        self._backoff = config.retry_initial
        self._retry_at = 0.0
        self._offsets: dict[Path, int] = {}
        self._in_hand: list[UsageRecord] = []
        self.counters = RecorderCounters()

    @classmethod
    def from_settings(
        cls, settings: Settings, engine: AsyncEngine, metrics: PortalMetrics = NULL_METRICS
    ) -> UsageRecorder:
        """A recorder with the spool directory and knobs from settings."""
        config = RecorderConfig(
            max_queue=settings.usage_queue_size,
            batch_size=settings.usage_batch_size,
            flush_interval=settings.usage_flush_interval_seconds,
            write_timeout=settings.usage_write_timeout_seconds,
            retry_max=settings.usage_retry_max_seconds,
        )
        recorder = cls(engine, Spool(settings.usage_spool_dir), config, metrics)
        metrics.on_scrape(recorder.report_levels)
        return recorder

    def record(self, record: UsageRecord) -> None:
        """Queue a record without waiting; a full queue spills to the spool. Never raises."""
        if self._closed:
            # After shutdown drained the queue (a request finishing very late): straight to disk.
            log.warning("usage record %s arrived after shutdown; spooling it", record.request_id)
            self._append_to_spool([record])
            return
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.counters.spilled += 1
            self._overflow.append(record)
            if self._overflow_task is None or self._overflow_task.done():
                self._overflow_task = asyncio.get_running_loop().create_task(self._spill())

    @property
    def depth(self) -> int:
        """Records waiting in memory (queue plus spill in progress)."""
        return self._queue.qsize() + len(self._overflow)

    @property
    def spool_records(self) -> int:
        """Records in the spool, waiting for the database."""
        return self._spool.records

    @property
    def spool_lost(self) -> int:
        """Records neither the database nor the spool took (a failed spool write)."""
        return self.counters.lost

    def report_levels(self) -> None:
        """Put the queue depth and spool size on the metrics' gauges."""
        self._metrics.usage_levels(self.depth, self._spool.records)

    def status(self) -> RecorderStatus:
        """A snapshot for the status endpoint."""
        return RecorderStatus(
            database="ok" if self._db_ok else "unavailable",
            last_error=self._last_error,
            queue_depth=self.depth,
            queue_capacity=self._config.max_queue,
            spool_records=self._spool.records,
            spool_bytes=self._spool.bytes,
            spool_dir=str(self._spool.slot),
            counters=RecorderCounters(**{
                name: getattr(self.counters, name) for name in RecorderCounters.__slots__
            }),
        )

    def start(self) -> None:
        """Start the background writer (it first replays whatever a previous run spooled)."""
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def flush(self) -> None:
        """Return once everything recorded so far is in the database or the spool."""
        await self._queue.join()
        while self._overflow_task is not None and not self._overflow_task.done():
            await self._overflow_task

    async def close(self) -> None:
        """Drain the queue to the database or the spool, then release the spool.

        Bounded: each batch has the write timeout; past the drain timeout the writer is
        cancelled and what it held goes to the spool.
        """
        timeout = self._config.drain_timeout
        self._stopping = True
        self._wake()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                log.error("usage writer did not drain in %ss; spooling the rest", timeout)
        rest = [r for r in _drain(self._queue) if r is not None]
        if rest:
            await asyncio.to_thread(self._append_to_spool, rest)
        while self._overflow_task is not None and not self._overflow_task.done():
            await self._overflow_task
        self._closed = True
        self._spool.close()

    async def _run(self) -> None:
        try:
            while True:
                taken = await self._next_batch()
                if self._in_hand:
                    await self._deliver(self._in_hand)
                    self._in_hand = []
                for _ in range(taken):
                    self._queue.task_done()
                if self._replay_due():
                    await self._replay()
                self.report_levels()  # per batch, so other workers' scrapes see it too
                if self._stopping and self._queue.empty():
                    return
        except asyncio.CancelledError:
            # Shutdown ran out of time: what the writer holds goes to disk, not away. (If its
            # insert had in fact committed, the replay's ON CONFLICT makes it one row.)
            self._append_to_spool(self._in_hand)
            raise

    def _replay_due(self) -> bool:
        return bool(self._spool.records) and not self._stopping and (
            time.monotonic() >= self._retry_at
        )

    async def _next_batch(self) -> int:
        """Fill `_in_hand` with up to one batch; return how many queue items were taken."""
        taken = 0
        if self._queue.empty():
            if self._stopping:
                return 0
            # With records spooled, wake up in time for the next replay attempt.
            wait = max(0.0, self._retry_at - time.monotonic()) if self._spool.records else None
            try:
                first = await asyncio.wait_for(self._queue.get(), wait)
            except TimeoutError:
                return 0
            taken = 1
            if first is not None:
                self._in_hand.append(first)
        size = self._config.batch_size
        if self._queue.qsize() < size - len(self._in_hand) and not self._stopping:
            await asyncio.sleep(self._config.flush_interval)  # linger: fuller batches
        while len(self._in_hand) < size and not self._queue.empty():
            item = self._queue.get_nowait()
            taken += 1
            if item is not None:
                self._in_hand.append(item)
        return taken

    async def _deliver(self, batch: Sequence[UsageRecord]) -> None:
        if self._spool.records or not self._db_ok:
            await self._to_spool(batch)  # behind what is already waiting, to keep the order
            return
        started = time.perf_counter()
        try:
            inserted = await asyncio.wait_for(
                insert_batch(self._engine, batch), self._config.write_timeout
            )
        except Exception as exc:  # any failure: the batch is kept in the spool, not lost
            if not is_row_error(exc):
                self._failed(exc)
            await self._to_spool(batch)
            return
        self._metrics.usage_batch_took(time.perf_counter() - started)
        self._metrics.usage_result("written", inserted)
        self.counters.written += inserted
        self.counters.duplicates += len(batch) - inserted

    async def _replay(self) -> None:
        segments = await asyncio.to_thread(self._spool.seal)
        for segment in segments:
            if not await self._replay_segment(segment):
                return
        if not self._db_ok:
            log.warning("usage database is back; the spool is replayed")
        self._db_ok, self._last_error = True, None
        self._backoff = self._config.retry_initial

    async def _replay_segment(self, segment: Segment) -> bool:
        offset = self._offsets.get(segment.path, 0)
        while True:
            chunk = await asyncio.to_thread(
                self._spool.read, segment, offset, self._config.replay_batch
            )
            if chunk.next_offset == offset:
                break
            if chunk.bad_lines:
                self._reject(chunk.bad_lines, "unreadable spool line")
            if chunk.records and not await self._replay_chunk(chunk.records):
                self._offsets[segment.path] = offset
                return False
            self._spool.consumed(len(chunk.records) + len(chunk.bad_lines))
            offset = chunk.next_offset
        self._offsets.pop(segment.path, None)
        await asyncio.to_thread(self._spool.finished, segment)
        return True

    async def _replay_chunk(self, records: Sequence[UsageRecord]) -> bool:
        try:
            inserted = await asyncio.wait_for(
                insert_batch(self._engine, records), self._config.write_timeout
            )
        except Exception as exc:
            if is_row_error(exc):
                # One bad row would block the spool forever: find it, set it aside.
                return await self._replay_one_by_one(records)
            self._failed(exc)  # unreachable or failing: keep the spool, retry later
            return False
        self.counters.replayed += inserted
        self._metrics.usage_result("written", inserted)
        self.counters.duplicates += len(records) - inserted
        return True

    async def _replay_one_by_one(self, records: Sequence[UsageRecord]) -> bool:
        for record in records:
            try:
                inserted = await asyncio.wait_for(
                    insert_batch(self._engine, [record]), self._config.write_timeout
                )
            except Exception as exc:
                if not is_row_error(exc):
                    self._failed(exc)
                    return False
                self._reject([record.to_json()], _reason(exc))
                continue
            self.counters.replayed += inserted
            self._metrics.usage_result("written", inserted)
            self.counters.duplicates += 1 - inserted
        return True

    async def _spill(self) -> None:
        # Group commit: everything that overflowed while the last fsync ran goes in one write.
        while self._overflow:
            batch, self._overflow = self._overflow, []
            await asyncio.to_thread(self._append_to_spool, batch)
        self._wake()  # a writer idle on an empty queue must learn the spool has work

    def _wake(self) -> None:
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            pass  # the writer is busy and will look at the spool after this batch

    async def _to_spool(self, batch: Sequence[UsageRecord]) -> None:
        await asyncio.to_thread(self._append_to_spool, batch)

    def _append_to_spool(self, batch: Sequence[UsageRecord]) -> None:
        try:
            spooled = self._spool.append(batch)
            self.counters.spooled += spooled
            self._metrics.usage_result("spooled", spooled)
        except OSError:
            # Last resort (disk full, permissions): the records go to the log, whole, so an
            # operator can still load them; `lost` in the status says this happened.
            self.counters.lost += len(batch)
            log.exception("usage spool write failed; records follow")
            for record in batch:
                log.error("UNSPOOLED usage record %s", record.to_json().decode())

    def _reject(self, lines: list[bytes], reason: str) -> None:
        self.counters.rejected += len(lines)
        self._metrics.usage_result("rejected", len(lines))
        # The database's reason may quote the refused value, which an upstream chose.
        log.error("database refused %d usage record(s): %s", len(lines), one_line(reason))
        self._spool.reject(lines, reason)

    def _failed(self, exc: BaseException) -> None:
        if self._db_ok:
            log.warning("usage database unavailable (%s); spooling records", type(exc).__name__)
        else:
            self._backoff = min(self._config.retry_max, self._backoff * 2)
        self._db_ok = False
        self._last_error = f"{type(exc).__name__}: {exc}"[:300]
        self._retry_at = time.monotonic() + self._backoff


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return f"{type(orig or exc).__name__}: {orig or exc}"[:500]


def _drain(queue: asyncio.Queue[UsageRecord | None]) -> list[UsageRecord | None]:
    items: list[UsageRecord | None] = []
    while not queue.empty():
        items.append(queue.get_nowait())
        queue.task_done()
    return items
