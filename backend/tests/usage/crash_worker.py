"""A recorder in its own process, for the crash tests to SIGKILL (not a test module).

    python -m backend.tests.usage.crash_worker spool  <database url> <spool dir> <count>
    python -m backend.tests.usage.crash_worker replay <database url> <spool dir>

`spool`: the database is unreachable; records `count` records with ids crash-000000...
and prints `ACKED n` each time the spool has acknowledged (fsync'd) the first n of them.
`replay`: replays the spool into the database, slowly enough to be killed halfway.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from backend.database.engine import make_engine
from backend.tests.usage.helpers import make_record
from backend.usage.recorder import RecorderConfig, UsageRecorder
from backend.usage.spool import Spool


def record_id(index: int) -> str:
    """The request id of the index-th record the worker makes."""
    return f"crash-{index:06d}"


async def spool(url: str, spool_dir: Path, count: int) -> None:
    """Record into an unreachable database, reporting acknowledgements, until killed."""
    engine = make_engine(url, connect_timeout=0.2)
    config = RecorderConfig(batch_size=25, flush_interval=0.001, retry_initial=3600)
    recorder = UsageRecorder(engine, Spool(spool_dir), config)
    recorder.start()
    acked = 0
    for index in range(count):
        recorder.record(make_record(request_id=record_id(index)))
        if index % 5 == 0:
            await asyncio.sleep(0.0005)
        if recorder.counters.spooled != acked:
            acked = recorder.counters.spooled
            print(f"ACKED {acked}", flush=True)
    while True:
        await asyncio.sleep(0.001)
        if recorder.counters.spooled != acked:
            acked = recorder.counters.spooled
            print(f"ACKED {acked}", flush=True)


async def replay(url: str, spool_dir: Path) -> None:
    """Replay the spool in small transactions, until killed (or done)."""
    engine = make_engine(url)
    recorder = UsageRecorder(engine, Spool(spool_dir), RecorderConfig(replay_batch=50))
    recorder.start()
    print("STARTED", flush=True)
    await asyncio.sleep(3600)


def main() -> None:
    """Dispatch on the mode argument."""
    mode, url, spool_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if mode == "spool":
        asyncio.run(spool(url, spool_dir, int(sys.argv[4])))
    else:
        asyncio.run(replay(url, spool_dir))


if __name__ == "__main__":
    main()
