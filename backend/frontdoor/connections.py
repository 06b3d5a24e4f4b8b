"""Open long-lived connections per client address, capped, in one worker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class ClientConnections:
    """Counts open connections (WebSockets) per client key; refuses one past `limit`.

    In-process: each worker holds its own count, so with N workers a client may hold up to
    N x `limit` sockets on one host (the README says so). Entries vanish at zero, so memory
    follows the open connections, not every client ever seen.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def count(self, key: str) -> int:
        """How many connections `key` holds now."""
        return self._open.get(key, 0)

    @contextmanager
    def hold(self, key: str) -> Iterator[bool]:
        """Hold one slot for `key` while the block runs; yields False (and holds nothing)
        when the client already has `limit` open."""
        current = self._open.get(key, 0)
        if current >= self.limit:
            yield False
            return
        self._open[key] = current + 1
        try:
            yield True
        finally:
            remaining = self._open[key] - 1
            if remaining:
                self._open[key] = remaining
            else:
                del self._open[key]
