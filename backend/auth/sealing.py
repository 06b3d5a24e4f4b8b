"""Secrets at rest: AES-256-GCM with keys derived (HKDF) from SESSION_SECRET.

A browser session's tokens are stored sealed, bound to the row they belong to (the
associated data), so a database dump holds no token and a sealed blob cannot be moved to
another session. The same secret gives a second, separate key for the CSRF tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12  # AES-GCM's standard nonce; random per seal (2^32 seals per key is far off)


class Unsealable(Exception):
    """A sealed value that does not open: tampered, another row's, or another key's."""


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


class Sealer:
    """Seals and opens values with one secret; also the keyed MAC for CSRF tokens."""

    def __init__(self, secret: bytes) -> None:
        self._aead = AESGCM(_derive(secret, b"ai-portal browser session tokens v1"))
        self._mac_key = _derive(secret, b"ai-portal csrf tokens v1")

    def seal(self, plaintext: bytes, *, bound_to: bytes) -> bytes:
        """Encrypt and authenticate `plaintext`, bound to `bound_to` (a row's key)."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, bound_to)

    def open(self, sealed: bytes, *, bound_to: bytes) -> bytes:
        """The plaintext of a value sealed for `bound_to`; Unsealable otherwise."""
        try:
            return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], bound_to)
        except (InvalidTag, ValueError):
            raise Unsealable("the sealed value does not open with this key and row") from None

    def mac(self, value: bytes) -> str:
        """A keyed MAC of `value` (hex), for tokens the page echoes back."""
        return hmac.new(self._mac_key, value, hashlib.sha256).hexdigest()


def session_key(secret: bytes | None, fallback: bytes) -> bytes:
    """SESSION_SECRET, or (development only; settings refuse it elsewhere) a key derived from
    the user-hash key, so sessions survive restarts and are shared by workers there too."""
    if secret is not None:
        return secret
    return _derive(fallback, b"ai-portal development session secret")
