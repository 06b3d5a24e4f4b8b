"""Who may do what: named decisions over an `Identity`, called by routes and services."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from backend.auth.identity import Identity


class Restricted(Protocol):
    """Anything limited to some groups (a specialist); empty means every signed-in user."""

    @property
    def allowed_groups(self) -> tuple[str, ...]:
        """The groups whose members may use it."""
        ...


def is_admin(identity: Identity, admin_groups: Collection[str]) -> bool:
    """A member of any ADMIN_GROUPS group, or the ADMIN_TOKEN break-glass credential."""
    if identity.method == "admin_token":
        return True
    return not identity.groups.isdisjoint(admin_groups)


def may_use(identity: Identity, thing: Restricted) -> bool:
    """Whether the caller may use a specialist: unrestricted, or a member of one of its groups."""
    allowed = thing.allowed_groups
    return not allowed or not identity.groups.isdisjoint(allowed)


def may_mint_keys(identity: Identity) -> bool:
    """Only a user proved by a token, a browser session or a trusted front end may mint API
    keys: not a key (a leaked one would outlive its own revocation), and not AUTH_MODE=none's
    believed header (a key minted for anyone's email would still act as them after a switch
    to jwt)."""
    return identity.signed_in and identity.method in ("jwt", "session", "header")
