"""The durable local spool: where usage records wait while the database can't take them.

Append-only JSON Lines segments, fsync'd before `append` returns (that return is the
acknowledgement). Each process claims its own slot directory under the spool root with an
exclusive `flock`, so several workers can share one root; a slot whose process died is
unlocked and gets adopted and replayed by whichever process looks next.

Replay reads sealed segments only: a process never appends to a segment it did not create
in this run, so a line torn by a crash can only be the last line of a sealed segment,
and it was never acknowledged, so it is skipped.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from backend.usage.record import UsageRecord

log = logging.getLogger(__name__)

_SUFFIX = ".jsonl"
REJECTED_FILE = "rejected.jsonl"


@dataclass(frozen=True, slots=True)
class Segment:
    """One sealed spool file, and the slot it belongs to."""

    path: Path
    slot: Path


@dataclass(frozen=True, slots=True)
class Chunk:
    """Records read from a segment, where reading stopped, and the lines that were unusable."""

    records: list[UsageRecord]
    next_offset: int
    bad_lines: list[bytes]


class Spool:
    """A per-process slot of append-only, fsync'd JSONL segments. Thread-safe."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._lock = threading.Lock()
        self._slot, self._slot_fd = _claim_slot(root)
        self._adopted: dict[Path, int] = {}  # orphan slot -> its lock fd, while replaying it
        segments = _segments(self._slot)
        self._seq = int(segments[-1].stem) + 1 if segments else 1
        self._fd: int | None = None
        self.records = sum(_count_lines(p) for p in segments)
        self.bytes = sum(p.stat().st_size for p in segments)

    @property
    def slot(self) -> Path:
        """This process's slot directory."""
        return self._slot

    def append(self, records: Iterable[UsageRecord]) -> int:
        """Write records and fsync; once this returns they survive a crash. Returns the count."""
        lines = [r.to_json() + b"\n" for r in records]
        if not lines:
            return 0
        data = b"".join(lines)
        with self._lock:
            if self._fd is None:
                self._fd = self._open_segment()
            _write_all(self._fd, data)
            os.fdatasync(self._fd)
            self.records += len(lines)
            self.bytes += len(data)
        return len(lines)

    def seal(self) -> list[Segment]:
        """Close the active segment; return every sealed segment, own first, oldest first.

        Appends made after this go to a new segment, replayed on the next call.
        """
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                self._seq += 1
            own = [Segment(p, self._slot) for p in _segments(self._slot)]
            return own + self._adopt_orphans()

    def read(self, segment: Segment, offset: int, limit: int) -> Chunk:
        """Up to `limit` records from `offset` in a sealed segment."""
        records: list[UsageRecord] = []
        bad: list[bytes] = []
        with segment.path.open("rb") as f:
            f.seek(offset)
            while len(records) < limit:
                line = f.readline()
                if not line.endswith(b"\n"):
                    if line:  # torn by a crash mid-write: never acknowledged
                        log.warning("skipping a torn last line in %s", segment.path)
                    break
                offset += len(line)
                try:
                    records.append(UsageRecord.from_json(line))
                except (ValueError, TypeError, KeyError):
                    bad.append(line)
        return Chunk(records, offset, bad)

    def consumed(self, lines: int) -> None:
        """Lines of a sealed segment that are now in the database (or rejected)."""
        with self._lock:
            self.records = max(0, self.records - lines)

    def finished(self, segment: Segment) -> None:
        """Delete a fully replayed segment; release an adopted slot once it is empty."""
        with self._lock:
            size = segment.path.stat().st_size
            segment.path.unlink()
            self.bytes = max(0, self.bytes - size)
            fd = self._adopted.get(segment.slot)
            if fd is not None and not _segments(segment.slot):
                os.close(fd)
                del self._adopted[segment.slot]

    def reject(self, lines: Iterable[bytes], reason: str) -> None:
        """Keep lines the database refused, with the reason, for a human to look at."""
        payload = b"".join(
            orjson.dumps({"reason": reason, "line": line.rstrip(b"\n").decode("utf-8", "replace")})
            + b"\n"
            for line in lines
        )
        if not payload:
            return
        fd = os.open(self.root / REJECTED_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            _write_all(fd, payload)
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the active segment and release every slot lock."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            for fd in self._adopted.values():
                os.close(fd)
            self._adopted.clear()
            os.close(self._slot_fd)

    def _open_segment(self) -> int:
        path = self._slot / f"{self._seq:012d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_dir(self._slot)  # the new file's name must survive a crash too
        return fd

    def _adopt_orphans(self) -> list[Segment]:
        found: list[Segment] = []
        for slot in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if slot == self._slot:
                continue
            if slot in self._adopted:  # adopted earlier, not finished yet
                found += [Segment(p, slot) for p in _segments(slot)]
                continue
            fd = _try_lock(slot)
            if fd is None:
                continue  # a live process owns it
            segments = _segments(slot)
            if not segments:
                os.close(fd)
                continue
            log.warning("adopting %d spool segment(s) left in %s", len(segments), slot)
            self._adopted[slot] = fd
            self.records += sum(_count_lines(p) for p in segments)
            self.bytes += sum(p.stat().st_size for p in segments)
            found += [Segment(p, slot) for p in segments]
        return found


def _claim_slot(root: Path) -> tuple[Path, int]:
    index = 0
    while True:
        slot = root / f"w{index}"
        slot.mkdir(exist_ok=True)
        fd = _try_lock(slot)
        if fd is not None:
            return slot, fd
        index += 1


def _try_lock(slot: Path) -> int | None:
    fd = os.open(slot / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _segments(slot: Path) -> list[Path]:
    # Zero-padded sequence numbers: name order is write order.
    return sorted(p for p in slot.glob(f"*{_SUFFIX}") if p.stem.isdigit())


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            count += block.count(b"\n")
    return count


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
