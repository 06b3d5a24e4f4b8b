"""User identities as keyed hashes: HMAC-SHA256, so a hash can't be reversed by guessing emails."""

from __future__ import annotations

import hashlib
import hmac


def hash_email(secret: bytes, email: str) -> str:
    """The hex HMAC-SHA256 of the normalised (trimmed, lower-cased) email."""
    return hmac.new(secret, email.strip().lower().encode(), hashlib.sha256).hexdigest()
