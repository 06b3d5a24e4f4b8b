"""The governance commands: `python -m backend.specialists import FILE` and
`python -m backend.audit verify`, on the DATABASE_URL of the environment (and `.env`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from backend.config.settings import get_settings
from backend.database.engine import is_sqlite, make_engine
from backend.database.migrations import SchemaError, ensure_schema
from backend.governance.audit import verify
from backend.governance.errors import InvalidVersion
from backend.governance.importer import import_specialists
from backend.governance.service import Governance
from backend.governance.startup import policy_of
from backend.specialists.manager import SpecialistManager, SpecialistsFileError, read_file

USAGE_IMPORT = "usage: python -m backend.specialists import FILE"
USAGE_VERIFY = "usage: python -m backend.audit verify"


async def _import(path: Path) -> int:
    settings = get_settings()
    items = read_file(path)
    engine = make_engine(settings.database_url)
    try:
        # As at start-up: a SQLite file is migrated, PostgreSQL only with AUTO_MIGRATE=true.
        migrate = is_sqlite(settings.database_url) if settings.auto_migrate is None else (
            settings.auto_migrate)
        await ensure_schema(engine, auto_migrate=migrate)
        governance = Governance(engine, SpecialistManager([]), policy_of(settings))
        result = await import_specialists(governance, items, source=path.name)
    finally:
        await engine.dispose()
    print(f"imported {path}: {len(result.created)} new specialists, {len(result.live)} "
          f"versions live, {len(result.proposed)} proposed (awaiting approval), "
          f"{len(result.unchanged)} unchanged")
    return 0


async def _verify() -> int:
    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        result = await verify(engine)
    finally:
        await engine.dispose()
    if result.broken is None:
        print(f"audit chain intact: {result.checked} entries")
        return 0
    print(f"audit chain BROKEN at entry {result.broken.seq}: {result.broken.reason} "
          f"({result.checked} entries before it are intact)")
    return 1


def specialists_main(argv: Sequence[str]) -> int:
    """`import FILE`: 0 done, 2 on a bad file or a bad version (nothing stored then)."""
    if len(argv) != 2 or argv[0] != "import":
        print(USAGE_IMPORT, file=sys.stderr)
        return 2
    try:
        return asyncio.run(_import(Path(argv[1])))
    except (SpecialistsFileError, SchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InvalidVersion as exc:
        print(f"error: {exc.message}: {exc.detail}", file=sys.stderr)
        return 2


def audit_main(argv: Sequence[str]) -> int:
    """`verify`: 0 when the chain holds, 1 with the first broken link."""
    if list(argv) != ["verify"]:
        print(USAGE_VERIFY, file=sys.stderr)
        return 2
    return asyncio.run(_verify())
