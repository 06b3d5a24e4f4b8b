"""Soft-limit alerts: a log warning, and a webhook POST delivered in the background.

A chat only puts the alert on a bounded queue; one task delivers them, with retries, so a
slow or failing webhook never slows a chat (a full queue drops the alert, logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp

from backend.budgets.base import ScopeState, to_usd
from backend.budgets.periods import Period
from backend.observability.safe_text import one_line

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
ATTEMPTS = 4
FIRST_BACKOFF_SECONDS = 0.5
POST_TIMEOUT_SECONDS = 5.0


class BudgetAlerts:
    """Warns once per scope and period (the store decides "once"); posts to the webhook."""

    def __init__(
        self, *, url: str | None, session: aiohttp.ClientSession, percent: float,
        backoff: float = FIRST_BACKOFF_SECONDS,
    ) -> None:
        self._url = url
        self._session = session
        self._percent = percent
        self._backoff = backoff
        self._queue: asyncio.Queue[dict[str, object]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None

    def crossed(self, state: ScopeState, period: Period) -> None:
        """A budget just reached the alert threshold: log it and queue the webhook."""
        charge = state.charge
        payload: dict[str, object] = {
            "scope": charge.scope, "name": charge.name, "period": period.id,
            "limit_usd": to_usd(state.limit or 0), "spent_usd": to_usd(state.spent),
            "percent": self._percent, "resets_at": period.end.isoformat(),
        }
        log.warning(
            "budget alert: %s %s spent %.6f of %.6f USD (%g %% threshold) in %s",
            charge.scope, one_line(charge.name), payload["spent_usd"], payload["limit_usd"],
            self._percent, period.id,
        )
        if self._url is None:
            return
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            log.warning("budget alert queue full: webhook for %s dropped", charge.scope)
            return
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._deliver())

    async def close(self) -> None:
        """Stop delivering (alerts still queued are dropped: they were logged)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _deliver(self) -> None:
        while not self._queue.empty():
            payload = self._queue.get_nowait()
            for attempt in range(ATTEMPTS):
                if await self._post(payload):
                    break
                if attempt + 1 < ATTEMPTS:
                    await asyncio.sleep(self._backoff * 2**attempt)
            else:
                log.warning("budget alert webhook failed %d times; alert dropped", ATTEMPTS)

    async def _post(self, payload: dict[str, object]) -> bool:
        assert self._url is not None
        try:
            async with self._session.post(
                self._url, json=payload,
                timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_SECONDS),
            ) as response:
                return response.status < 300
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("budget alert webhook: %s", one_line(type(exc).__name__))
            return False
