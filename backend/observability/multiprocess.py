"""PROMETHEUS_MULTIPROC_DIR's life cycle under `uvicorn --workers N`.

prometheus-client keeps each worker's values in `<kind>_<pid>.db` files there and sums them
on a scrape. Left over from a previous run, those files would add yesterday's counts to
today's; so the first worker of a new server wipes the directory, and later workers of the
same server (same supervisor) keep it. A worker that died leaves its counters (they stay
part of the totals, as Prometheus expects) but its live gauges are dropped.
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import os
import re
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

log = logging.getLogger(__name__)

_MARKER = ".server"
_LIVE_GAUGE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def server_identity() -> str:
    """Who this server is: the uvicorn supervisor when we are one of its workers, else us.

    A pid with its start time, so a reused pid after a restart is still a new server.
    """
    parent = multiprocessing.parent_process()
    pid = parent.pid if parent is not None and parent.pid is not None else os.getpid()
    return f"{pid}:{_start_time(pid)}"


def prepare_directory(path: Path, *, identity: str | None = None) -> bool:
    """Make the directory ready for this worker; True when it was wiped for a new server.

    Must run before any metric is created in this process (creating one opens its file).
    """
    path.mkdir(parents=True, exist_ok=True)
    identity = identity or server_identity()
    with open(path / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # workers start together: one decides at a time
        marker = path / _MARKER
        previous = marker.read_text() if marker.exists() else None
        if previous != identity:
            for stale in path.glob("*.db"):
                stale.unlink()
            marker.write_text(identity)
            log.info("metrics directory %s prepared for a new server", path)
            return True
        for entry in path.iterdir():
            match = _LIVE_GAUGE.match(entry.name)
            if match and not _alive(int(match.group(1))):
                mark_process_dead(int(match.group(1)), str(path))  # type: ignore[no-untyped-call]
        return False


def worker_exiting(path: Path) -> None:
    """Drop this worker's live gauges (its queue, its streams) as it shuts down."""
    mark_process_dead(os.getpid(), str(path))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 22 (starttime), counted after the parenthesised command name.
    return stat.rsplit(")", 1)[-1].split()[19]
