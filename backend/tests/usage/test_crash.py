"""A process killed with SIGKILL loses nothing the spool acknowledged, and duplicates nothing."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.database.migrations import ROOT
from backend.tests.usage.crash_worker import record_id
from backend.tests.usage.helpers import count_rows, eventually, make_record
from backend.usage.recorder import RecorderConfig, UsageRecorder
from backend.usage.spool import Spool
from backend.usage.table import usage_log

FAST = RecorderConfig(flush_interval=0.01, retry_initial=0.05)


async def _worker(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend.tests.usage.crash_worker", *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def _replay_everything(engine: AsyncEngine, spool_dir: Path) -> None:
    recorder = UsageRecorder(engine, Spool(spool_dir), FAST)
    recorder.start()
    try:
        async def empty() -> bool:
            return recorder.spool_records == 0

        await eventually(empty, within=30)
    finally:
        await recorder.close()


async def _ids(engine: AsyncEngine) -> tuple[list[str], int]:
    async with engine.connect() as conn:
        ids = (await conn.execute(select(usage_log.c.request_id))).scalars().all()
        distinct = (
            await conn.execute(select(func.count(func.distinct(usage_log.c.request_id))))
        ).scalar_one()
    return list(ids), int(distinct)


async def test_a_kill_while_spooling_loses_nothing_acknowledged(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    worker = await _worker("spool", "postgresql://127.0.0.1:9/unreachable", str(spool_dir), "20000")
    assert worker.stdout is not None
    acked = 0
    while acked < 500:  # let it get going, then kill it mid-write at a random moment
        line = await asyncio.wait_for(worker.stdout.readline(), 30)
        assert line, "the worker exited early"
        acked = int(line.split()[1])
    await asyncio.sleep(random.uniform(0, 0.05))
    worker.send_signal(signal.SIGKILL)
    rest, _ = await worker.communicate()
    acked = max([acked, *(int(x.split()[1]) for x in rest.splitlines() if x.startswith(b"ACKED"))])
    assert worker.returncode == -signal.SIGKILL

    await _replay_everything(engine, spool_dir)  # "start-up" with the database back
    ids, distinct = await _ids(engine)
    assert {record_id(i) for i in range(acked)} <= set(ids)  # every acknowledged record
    assert distinct == len(ids)


async def test_a_kill_mid_replay_loses_and_duplicates_nothing(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir)
    records = [make_record(request_id=record_id(i)) for i in range(5000)]
    spool.append(records)
    spool.close()
    url = engine.url.render_as_string(hide_password=False)
    worker = await _worker("replay", url, str(spool_dir))

    async def started() -> bool:
        return await count_rows(engine) > 0

    await eventually(started, within=30, every=0.005)
    worker.send_signal(signal.SIGKILL)  # mid-replay: some batches committed, one maybe half
    await worker.wait()
    assert 0 < await count_rows(engine) < len(records)

    await _replay_everything(engine, spool_dir)
    ids, distinct = await _ids(engine)
    assert sorted(ids) == [r.request_id for r in records] and distinct == len(records)
