"""The verified identity of one request, resolved once at the edge and passed down."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

from backend.usage.identity import hash_email

# How the identity was proved: the `auth_method` of each usage row.
# `session`: the browser's sign-in cookie (the tokens behind it are the provider's JWTs).
AuthMethod = Literal["none", "header", "jwt", "session", "api_key", "admin_token"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking, and how that was proved; never re-read from headers further in."""

    method: AuthMethod
    user_id: str | None = None
    email: str | None = None
    groups: frozenset[str] = frozenset()
    cost_center: str | None = None
    # The keyed hash that per-user limits, usage rows and API key ownership use.
    user_hash: str | None = None
    # The display name (the OIDC `name` claim), for pages; never used to decide anything.
    name: str | None = None
    # Epoch seconds after which the proof is no longer good (a JWT's exp, a key's expiry).
    expires_at: float | None = None
    # The personal API key that proved it, when one did.
    key_id: str | None = None

    @property
    def signed_in(self) -> bool:
        """Whether a user is known at all (none mode allows anonymous callers)."""
        return self.user_hash is not None


ANONYMOUS = Identity(method="none")


def user_hash(secret: bytes, *, email: str | None, user_id: str | None) -> str | None:
    """The keyed hash of the email, or of the user id when there is no email."""
    if email:
        return hash_email(secret, email)
    if user_id:
        # Not lower-cased: an IdP's subject identifiers are case-sensitive.
        return hmac.new(secret, b"sub:" + user_id.encode(), hashlib.sha256).hexdigest()
    return None
