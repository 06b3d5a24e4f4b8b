"""The one entry point every chat transport calls: who asks, which buckets, one take.

HTTP routes call it through `api/deps.py`; a WebSocket (or any later transport) calls
`RateLimits.decide` once per chat message with the connection's peer and headers, and
sends `decision.refusal()` however that transport reports errors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from backend.observability.metrics import NULL_METRICS, PortalMetrics
from backend.ratelimit.base import BackendUnavailable, Bucket, RateDecision, RateLimiter
from backend.ratelimit.failures import FailureThrottle
from backend.ratelimit.keys import Network, client_ip, client_key
from backend.ratelimit.policy import RatePolicy

log = logging.getLogger(__name__)

# While the store is down, tell fail-closed clients to come back after this long.
UNAVAILABLE_RETRY_AFTER_SECONDS = 1.0


@dataclass(slots=True)
class RateLimitStats:
    """Counters since start-up, per process, for /health and later metrics."""

    admitted: int = 0
    rejected: int = 0  # refused by a bucket: 429
    failed_open: int = 0  # store unreachable, served anyway
    failed_closed: int = 0  # store unreachable, refused: 503

    def snapshot(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)


class RateLimits:
    """The limiter, its policy and its proxy trust, behind one call per chat request."""

    def __init__(
        self,
        limiter: RateLimiter,
        policy: RatePolicy,
        *,
        trusted_proxies: Sequence[Network] = (),
        fail_open: bool = True,
        backend: str = "memory",
        ipv6_prefix: int = 64,
        admin_failures: FailureThrottle | None = None,
        metrics: PortalMetrics = NULL_METRICS,
    ) -> None:
        self.limiter = limiter
        self.policy = policy
        self.trusted_proxies = tuple(trusted_proxies)
        self.fail_open = fail_open
        self.backend = backend
        self.ipv6_prefix = ipv6_prefix
        # Failed admin authentications per client key (require_admin), with the same keys.
        self.admin_failures = (
            FailureThrottle(10, 300.0) if admin_failures is None else admin_failures
        )
        self.stats = RateLimitStats()
        self.metrics = metrics  # build_services sets the app's own
        self._outage_counted = 0  # requests decided without the store in the current outage

    @property
    def needs_specialist(self) -> bool:
        """Whether callers must pass the request's specialist id (some have own limits)."""
        return self.policy.needs_specialist

    def client_ip(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The client's key: its address, believing X-Forwarded-For only from trusted
        proxies, with an IPv6 address widened to its RATE_LIMIT_IPV6_PREFIX network."""
        return client_key(client_ip(peer, forwarded_for, self.trusted_proxies), self.ipv6_prefix)

    async def decide(
        self,
        *,
        peer: str | None,
        forwarded_for: Sequence[str] = (),
        user: str | None = None,
        specialist: str | None = None,
    ) -> RateDecision:
        """Take one token for one chat request and count the outcome; never raises.

        `user` is the keyed email hash; `specialist` the id the request names (only read
        when `needs_specialist`). The caller raises `decision.refusal()` when it is set.
        """
        ip = self.client_ip(peer, forwarded_for)
        buckets = self.policy.buckets(ip=ip, user=user, specialist=specialist)
        try:
            decision = await self.limiter.acquire(buckets)
        except BackendUnavailable as exc:
            return self._unavailable(buckets, exc)
        if self._outage_counted:
            log.warning(
                "rate-limit store answers again; %d requests were %s while it was unreachable",
                self._outage_counted, "served" if self.fail_open else "refused",
            )
            self._outage_counted = 0
        if decision.allowed:
            self.stats.admitted += 1
        else:
            self.stats.rejected += 1
            self.metrics.rate_limited(_scope(decision))
        return decision

    def _unavailable(self, buckets: Sequence[Bucket], exc: BackendUnavailable) -> RateDecision:
        # One warning per outage, not one per request: an outage can last many requests.
        if not self._outage_counted:
            log.warning(
                "rate-limit store unreachable (%s): failing %s until it answers",
                exc, "open (requests are served unlimited)" if self.fail_open
                else "closed (requests get 503)",
            )
        self._outage_counted += 1
        decision = RateDecision.backend_unavailable(
            buckets, fail_open=self.fail_open, retry_after=UNAVAILABLE_RETRY_AFTER_SECONDS
        )
        if self.fail_open:
            self.stats.failed_open += 1
        else:
            self.stats.failed_closed += 1
            self.metrics.rate_limited(_scope(decision))
        return decision

    def snapshot(self) -> dict[str, object]:
        """What /health reports about the limiter."""
        return {"backend": self.backend, "fail_open": self.fail_open, **self.stats.snapshot()}

    async def close(self) -> None:
        """Close the backend's connections."""
        await self.limiter.close()


def _scope(decision: RateDecision) -> str:
    """The deciding bucket's scope: a specialist's own limit, else the ip or user bucket."""
    return "specialist" if decision.specialist else decision.key_kind
