"""Keeps a worker's snapshot current: a cheap poll of the generation counter.

One indexed single-row read every SPECIALISTS_SYNC_SECONDS per worker (PostgreSQL and SQLite
alike); only when the number moved is the live set read and the snapshot swapped. The
request path never waits on it: it reads the snapshot in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError

from backend.governance.service import Governance

log = logging.getLogger(__name__)


class SnapshotSync:
    """A background task that reloads the snapshot when the database's generation moves."""

    def __init__(
        self, governance: Governance, interval: float,
        first_load: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._governance = governance
        # Until a first load has worked (the database was down at start-up), poll with it:
        # it seeds an empty database instead of swapping in an empty set.
        self._first_load = first_load
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        """Begin polling (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="specialists-sync")

    async def close(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def poll_once(self) -> bool:
        """One poll; True when it swapped the snapshot. Failures keep the last snapshot."""
        try:
            if self._governance.loaded_generation is None and self._first_load is not None:
                await self._first_load()
                changed = True
            else:
                changed = await self._governance.reload()
        except (OSError, TimeoutError, SQLAlchemyError) as exc:
            if not self._failing:  # once per outage, not every poll
                log.error("specialists: cannot read the database (%s); serving the last "
                          "snapshot until it is back", type(exc).__name__)
            self._failing = True
            return False
        except ValueError as exc:  # an inconsistent set (should not happen: writes validate)
            log.error("specialists: the database's live set is invalid, kept the last: %s", exc)
            return False
        if self._failing:
            log.info("specialists: the database is back")
        self._failing = False
        if changed:
            log.info("specialists: now serving generation %s",
                     self._governance.loaded_generation)
        return changed

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.poll_once()
