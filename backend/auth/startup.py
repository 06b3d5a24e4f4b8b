"""Start-up of the identity layer: the AUTH_MODE warning, and the first key fetch."""

from __future__ import annotations

import asyncio
import logging

from backend.auth.authenticator import Authenticator
from backend.config.settings import Settings

log = logging.getLogger("backend.auth")


def start_auth(settings: Settings, auth: Authenticator) -> asyncio.Task[None]:
    """Warn about AUTH_MODE=none; fetch the IdP's keys in the background.

    Start-up never waits for the IdP: a briefly unreachable one only shows in /ready, and
    the first request tries again.
    """
    if auth.mode == "none":
        log.warning(
            "AUTH_MODE=none: the %s header is believed from anyone; set AUTH_MODE=jwt or "
            "header before real users connect", settings.user_email_header,
        )
    return asyncio.create_task(_warm_up(auth), name="jwks-warm-up")


async def _warm_up(auth: Authenticator) -> None:
    keys = auth.verifier.keys if auth.verifier else None
    if keys is None:
        return
    try:
        await keys.ensure_usable()
    except Exception as exc:  # reported by /ready and on use; start-up goes on
        log.warning("identity provider's keys not loaded at start-up: %s", exc)
