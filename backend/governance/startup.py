"""Start-up: seed an empty database from the file, load the live set, start the poll."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config.settings import Settings
from backend.governance.importer import import_specialists
from backend.governance.service import Governance, Policy
from backend.governance.sync import SnapshotSync
from backend.providers.factory import UnknownProvider, check_provider_name
from backend.specialists.manager import SpecialistManager, read_file

log = logging.getLogger(__name__)


def policy_of(settings: Settings) -> Policy:
    """The approval rule and classification ceilings from settings; a ceiling for a provider
    that does not exist stops start-up (a typo would silently leave the default ceiling)."""
    for name in settings.provider_classification:
        try:
            check_provider_name(name)
        except UnknownProvider as exc:
            raise UnknownProvider(f"PROVIDER_CLASSIFICATION: {exc}") from None
    return Policy(settings.effective_approval(), dict(settings.provider_classification))


async def seed_and_load(governance: Governance, specialists_file: Path) -> None:
    """Seed an empty database from the file (once, whichever worker gets there first),
    then serve the database's live set."""
    await import_specialists(
        governance, read_file(specialists_file), source=specialists_file.name,
        only_if_empty=True,
    )
    await governance.reload(force=True)


async def start_governance(
    settings: Settings, engine: AsyncEngine, manager: SpecialistManager
) -> tuple[Governance, SnapshotSync]:
    """The governance service and its running sync.

    A database unreachable at start-up does not stop the app (as for usage records): the
    file's specialists serve until the database answers, then its live set takes over.
    """
    governance = Governance(engine, manager, policy_of(settings))
    sync = SnapshotSync(
        governance, settings.specialists_sync_seconds,
        first_load=lambda: seed_and_load(governance, settings.specialists_file),
    )
    try:
        async with asyncio.timeout(3 * settings.database_connect_timeout_seconds):
            await seed_and_load(governance, settings.specialists_file)
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        log.error("specialists: database unreachable at start-up (%s); serving %s until "
                  "it is back", type(exc).__name__, settings.specialists_file)
    sync.start()
    return governance, sync
