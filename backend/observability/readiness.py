"""GET /ready: may this instance take traffic? Database (or a healthy, small spool),
Redis when configured, the specialists, and (AUTH_MODE=jwt) the identity provider's signing
keys. Never a provider, never a credential.

`/health` stays the cheap liveness check; this one does a round trip per dependency, each
bounded, so a probe never hangs longer than READY_TIMEOUT_SECONDS per check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


class _Recorder(Protocol):
    @property
    def spool_records(self) -> int: ...

    @property
    def spool_lost(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Readiness:
    """Each check's verdict; ready when none failed."""

    checks: dict[str, str]
    failed: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """True when every check passed."""
        return not self.failed

    def body(self) -> dict[str, Any]:
        """The JSON body: status, the failed checks by name, every check's verdict."""
        return {
            "status": "ready" if self.ready else "not_ready",
            "failed": self.failed,
            "checks": self.checks,
        }


async def check_readiness(
    *, engine: AsyncEngine, recorder: _Recorder,
    redis_ping: Callable[[], Awaitable[None]] | None,
    specialists: int, max_spool_records: int, bound_seconds: float,
    auth: tuple[bool, str] = (True, "ok"),
) -> Readiness:
    """Run every check (the database and Redis at the same time)."""
    database, redis = await asyncio.gather(
        _probe(lambda: _select_one(engine), bound_seconds),
        _probe(redis_ping, bound_seconds) if redis_ping is not None else _not_configured(),
    )
    checks = {"database": database, "redis": redis}
    failed: list[str] = []
    spooled, lost = recorder.spool_records, recorder.spool_lost
    checks["spool"] = f"ok ({spooled} records)" if not lost else f"failed: {lost} records lost"
    if lost:
        failed.append("spool")
    if database != "ok" and (lost or spooled >= max_spool_records):
        # The database is down and the spool cannot (or may no longer) stand in for it.
        failed.append("database")
    if redis not in ("ok", "not configured"):
        failed.append("redis")
    checks["specialists"] = f"ok ({specialists} enabled)" if specialists else "none enabled"
    if not specialists:
        failed.append("specialists")
    # The cached verdict of the key-set cache: nothing is fetched for a probe.
    auth_ok, checks["auth"] = auth
    if not auth_ok:
        failed.append("auth")
    return Readiness(checks, failed)


async def _select_one(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _probe(call: Callable[[], Awaitable[None]], bound_seconds: float) -> str:
    try:
        async with asyncio.timeout(bound_seconds):
            await call()
    except TimeoutError:
        return f"unavailable: no answer within {bound_seconds:g} s"
    except Exception as exc:  # reported by class name only: messages may hold hosts or users
        return f"unavailable: {type(exc).__name__}"
    return "ok"


async def _not_configured() -> str:
    return "not configured"
