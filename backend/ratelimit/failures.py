"""Failed attempts per client (admin authentication): a sliding window, bounded memory.

A client with `max_failures` failures inside the last `window_seconds` is refused, without
its credentials being checked, until the oldest of them leaves the window. So one client
(one key from `RateLimits.client_ip`: an address, or an IPv6 network) gets at most
`max_failures` guesses per window, however fast it asks. Kept per process.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from backend.errors import PortalError

# Clients tracked at once; beyond it the one whose last failure is oldest is forgotten.
# About 1 KB each (a key and a few floats), so the table stays around 10 MB at worst.
MAX_TRACKED_CLIENTS = 10_000


class AuthThrottled(PortalError):
    """Too many failed authentications from this client; `retry_after` says when to retry."""

    code = "auth_throttled"

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            "too many failed authentications from this client; "
            f"retry in {self.retry_after} s"
        )


class FailureThrottle:
    """Counts failures per client over a sliding window and says who must wait."""

    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        *,
        max_clients: int = MAX_TRACKED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.max_clients = max_clients
        self._clock = clock
        # Oldest failure first in each deque; least recently failing client first overall.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, client: str) -> float | None:
        """Seconds until `client` may try again, or None when it is not throttled."""
        failures = self._failures.get(client)
        if failures is None or len(failures) < self.max_failures:
            return None
        wait = failures[0] + self.window_seconds - self._clock()
        return wait if wait > 0 else None

    def check(self, client: str) -> None:
        """Raise `AuthThrottled` when `client` has used up its failures for now."""
        wait = self.retry_after(client)
        if wait is not None:
            raise AuthThrottled(wait)

    def failed(self, client: str) -> int:
        """Count one failure; returns the client's failures inside the window, this one included."""
        now = self._clock()
        failures = self._failures.pop(client, None)
        if failures is None:
            failures = deque(maxlen=self.max_failures)
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
        failures.append(now)
        self._failures[client] = failures  # now the most recent
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
        return len(failures)

    def succeeded(self, client: str) -> None:
        """Forget a client's failures once it authenticates (a typo, then the right token)."""
        self._failures.pop(client, None)
