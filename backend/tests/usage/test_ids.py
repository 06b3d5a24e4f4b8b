"""Request and reservation ids: uuid4-shaped, unique, and a forked worker's are its own."""

from __future__ import annotations

import os
import uuid

from backend.usage.ids import IdSource, new_id


def test_ids_are_distinct_version_4_uuid_hex() -> None:
    ids = [new_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:2_000]:
        parsed = uuid.UUID(hex=value)
        assert (parsed.hex, parsed.version, parsed.variant) == (value, 4, uuid.RFC_4122)


def test_two_sources_share_no_id() -> None:
    # Each process draws its own key: counters that start alike still give other ids.
    first, second = IdSource(), IdSource()
    assert not {first.hex() for _ in range(1_000)} & {second.hex() for _ in range(1_000)}


def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    # Same key and counter in both after fork() unless the child draws a new key.
    source = IdSource()
    source.hex()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without running pytest's teardown
        os.close(read)
        os.write(write, " ".join(source.hex() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {source.hex() for _ in range(50)}
    assert len(child) == 50
    assert not child & parent
