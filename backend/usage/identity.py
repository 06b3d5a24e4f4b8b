"""User identities as keyed hashes: HMAC-SHA256, so a hash can't be reversed by guessing emails.

The key is USER_HASH_SECRET. In development, when it is unset, the key is one generated at
random on first start and kept in USER_HASH_SECRET_FILE (mode 0600), so hashes stay stable
across restarts and no two installations share a key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from pydantic import SecretStr

from backend.config.settings import Settings

log = logging.getLogger(__name__)

KEY_BYTES = 32


class HashKeyError(RuntimeError):
    """The generated key file cannot be used (unreadable, too open, empty): start-up stops."""


def hash_email(secret: bytes, email: str) -> str:
    """The hex HMAC-SHA256 of the normalised (trimmed, lower-cased) email."""
    return hmac.new(secret, email.strip().lower().encode(), hashlib.sha256).hexdigest()


def with_hash_key(settings: Settings) -> Settings:
    """`settings` with a user-hash key: USER_HASH_SECRET, else the generated key file's."""
    if settings.user_hash_secret is not None:
        return settings
    path = settings.user_hash_secret_file
    key, created = load_or_create_key(path)
    log.warning(
        "USER_HASH_SECRET is unset: user hashes are keyed with the random key %s %s (keep "
        "that file to keep hashes stable; several hosts must share USER_HASH_SECRET instead)",
        "generated now in" if created else "generated on first start, in", path,
    )
    return settings.model_copy(update={"user_hash_secret": SecretStr(key)})


def load_or_create_key(path: Path) -> tuple[str, bool]:
    """The key kept in `path`, created at random (mode 0600) when absent; True if created now.

    Creation is atomic (a complete file is linked into place), so workers starting together
    agree on one key: the first link wins and the others read it.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_hex(KEY_BYTES) + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.link(draft, path)
            return _read_key(path), True
        except FileExistsError:
            pass  # another process created it first: use theirs
        finally:
            with contextlib.suppress(OSError):
                draft.unlink()
    return _read_key(path), False


def _read_key(path: Path) -> str:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        key = path.read_text().strip()
    except OSError as exc:
        raise HashKeyError(f"cannot read the user-hash key file {path}: {exc}") from exc
    if mode & 0o077:
        raise HashKeyError(
            f"the user-hash key file {path} is readable by others (mode {mode:o}): "
            "run `chmod 600` on it"
        )
    if len(key) < 2 * KEY_BYTES:
        raise HashKeyError(f"the user-hash key file {path} does not hold a key: delete it")
    return key
