"""A database that is down: the file's specialists serve, the admin API answers 503, and
once it is back the database's live set takes over (seeded if it was empty)."""

from __future__ import annotations

from typing import Any

from backend.tests.chat.conftest import SPECIALISTS
from backend.tests.governance.conftest import ALICE, CAROL, chat, governed_portal
from backend.tests.ratelimit.servers import free_port


async def test_the_file_serves_while_the_database_is_down_and_admin_calls_get_503(
    portal_factory: Any,
) -> None:
    portal = await governed_portal(
        portal_factory, f"postgresql://127.0.0.1:{free_port()}/gone",
        database_connect_timeout_seconds=0.5)
    assert (await chat(portal.client, SPECIALISTS["openai"], CAROL)).status_code == 200
    for path in ("/admin/specialists", "/admin/audit",
                 f"/admin/specialists/{SPECIALISTS['openai']}/versions"):
        down = await portal.client.get(path, headers=ALICE)
        assert down.status_code == 503, (path, down.text)
        assert down.json()["error"] == "governance_unavailable"
    refused = await portal.client.post(
        f"/admin/specialists/{SPECIALISTS['openai']}/versions", headers=ALICE,
        json={"model": "gpt-4o-mini", "reason": "r"})
    assert refused.status_code == 503


async def test_when_the_database_comes_back_an_empty_one_is_seeded_then_served(
    tmp_path: Any,
) -> None:
    from backend.database.engine import make_engine
    from backend.database.migrations import upgrade
    from backend.governance.service import Governance, Policy
    from backend.governance.startup import seed_and_load
    from backend.governance.sync import SnapshotSync
    from backend.specialists.manager import SpecialistManager
    from backend.tests.chat.conftest import write_specialists

    folder = tmp_path / "later"  # missing: SQLite cannot open the file yet
    path = write_specialists(tmp_path / "specialists.yaml", "http://127.0.0.1:9/v1")
    from_file = SpecialistManager.from_file(path)
    engine = make_engine(f"sqlite:///{folder / 'g.db'}")
    try:
        governance = Governance(engine, from_file, Policy("required", {}))
        sync = SnapshotSync(governance, 0.1, first_load=lambda: seed_and_load(governance, path))
        assert await sync.poll_once() is False  # down: the file's set keeps serving
        assert from_file.get(SPECIALISTS["openai"]).version == 1
        folder.mkdir()
        await upgrade(engine)
        assert await sync.poll_once() is True  # back: seeded from the file, then loaded
        assert governance.loaded_generation is not None
        overview = await governance.overview()
        assert {s["id"] for s in overview} == {str(s.id) for s in from_file.all()}
        assert await sync.poll_once() is False  # nothing changed since
    finally:
        await engine.dispose()
