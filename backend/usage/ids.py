"""Ids for what is recorded: request ids (usage_log's key) and budget reservations.

Made without a system call per id. `os.urandom`, and `uuid4` which calls it, release the
GIL around getrandom(); on a busy event loop that hands the GIL to another thread (the
SQLite writer's, say) and the loop waits to get it back: about 20 us a call under load,
against 0.5 us alone. Here an id is a keyed BLAKE2b of a per-process counter: as hard to
guess as the 256-bit key drawn once per process, and unique because the counter never
repeats under one key (each process, forked ones included, draws its own key).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable


class IdSource:
    """32 hex digits at a time, shaped like a version-4 UUID's hex."""

    def __init__(self) -> None:
        self._rekey()
        os.register_at_fork(after_in_child=self._rekey)

    def _rekey(self) -> None:
        self._keyed = hashlib.blake2b(key=os.urandom(32), digest_size=16)
        self._next: Callable[[], int] = itertools.count().__next__

    def hex(self) -> str:
        """A new id: `uuid.uuid4().hex`'s format (version 4, RFC 4122 variant)."""
        digest = self._keyed.copy()
        digest.update(self._next().to_bytes(8, "little"))
        value = int.from_bytes(digest.digest(), "big")
        value = (value & _CLEAR) | _UUID4_BITS
        return f"{value:032x}"


# The bits uuid.UUID(version=4) sets: the version nibble and the variant's two bits.
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_BITS = (0x4000 << 64) | (0x8000 << 48)

_SOURCE = IdSource()
new_id = _SOURCE.hex
