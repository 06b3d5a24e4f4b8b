"""The usage recorder: requests hand records to a bounded queue; one task writes batches.

Nothing on the request path waits for the database: `record()` is a non-blocking put.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.usage.record import UsageRecord
from backend.usage.table import usage_log

log = logging.getLogger(__name__)


class UsageRecorder:
    """Batches records into one INSERT per transaction, by size or by a short interval."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_queue: int = 10_000,
        batch_size: int = 200,
        flush_interval: float = 0.2,
    ) -> None:
        self._engine = engine
        self._queue: asyncio.Queue[UsageRecord] = asyncio.Queue(maxsize=max_queue)
        self._batch_size = batch_size
        self._interval = flush_interval
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def record(self, record: UsageRecord) -> None:
        """Queue a record without waiting; never raises into the request."""
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            log.error("usage queue full, record %s written inline later", record.request_id)
            asyncio.get_running_loop().create_task(self._write([record]))

    @property
    def depth(self) -> int:
        """Records waiting to be written."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the background writer."""
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def close(self) -> None:
        """Stop the writer after draining everything queued."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()

    async def flush(self) -> None:
        """Write everything queued now (tests and shutdown)."""
        while not self._queue.empty():
            await self._write(self._take_batch())

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            await asyncio.sleep(self._interval if self._queue.qsize() < self._batch_size else 0)
            await self._write([first, *self._take_batch(self._batch_size - 1)])

    def _take_batch(self, size: int | None = None) -> list[UsageRecord]:
        limit = size if size is not None else self._batch_size
        batch: list[UsageRecord] = []
        while len(batch) < limit and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _write(self, batch: Sequence[UsageRecord]) -> None:
        if not batch:
            return
        try:
            async with self._engine.begin() as conn:
                await conn.execute(usage_log.insert(), [r.row() for r in batch])
            self.written += len(batch)
        except Exception:
            # The durable spool arrives with the usage-records work; until then, say so loudly.
            log.exception("could not write %d usage records", len(batch))
