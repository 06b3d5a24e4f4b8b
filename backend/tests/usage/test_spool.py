"""The spool: fsync'd order-keeping segments, torn lines skipped, one slot per process."""

from __future__ import annotations

from pathlib import Path

from backend.tests.usage.helpers import make_record
from backend.usage.spool import REJECTED_FILE, Spool


def _read_all(spool: Spool) -> list[str]:
    ids: list[str] = []
    for segment in spool.seal():
        offset = 0
        while True:
            chunk = spool.read(segment, offset, 3)
            if chunk.next_offset == offset:
                break
            ids += [r.request_id for r in chunk.records]
            offset = chunk.next_offset
    return ids


def test_records_read_back_in_the_order_they_were_appended_across_segments(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    first = [make_record() for _ in range(5)]
    second = [make_record() for _ in range(4)]
    spool.append(first)
    assert len(spool.seal()) == 1  # sealed: the next append opens a new segment
    spool.append(second)
    assert spool.records == 9 and spool.bytes > 0
    assert _read_all(spool) == [r.request_id for r in first + second]
    assert spool.read(spool.seal()[0], 0, 100).records[0] == first[0]  # round-trips whole
    spool.close()


def test_a_torn_last_line_is_skipped_and_unreadable_lines_are_reported(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    good = [make_record() for _ in range(3)]
    spool.append(good)
    (segment,) = spool.seal()
    with segment.path.open("ab") as f:
        f.write(b"not json\n")
        f.write(good[0].to_json()[:40])  # a crash mid-write: no newline
    chunk = spool.read(segment, 0, 100)
    assert [r.request_id for r in chunk.records] == [r.request_id for r in good]
    assert chunk.bad_lines == [b"not json\n"]
    assert spool.read(segment, chunk.next_offset, 100).records == []
    spool.reject(chunk.bad_lines, "unreadable spool line")
    assert b"not json" in (tmp_path / REJECTED_FILE).read_bytes()
    spool.close()


def test_a_second_process_gets_its_own_slot_and_a_dead_ones_slot_is_adopted(
    tmp_path: Path,
) -> None:
    live = Spool(tmp_path)
    other = Spool(tmp_path)  # a second worker sharing the root
    assert live.slot != other.slot
    left_behind = [make_record() for _ in range(4)]
    other.append(left_behind)
    other.close()  # its process "dies": the lock goes with it

    restarted = Spool(tmp_path)  # takes the first free slot
    assert restarted.slot == other.slot and restarted.records == 4
    restarted.close()

    segments = live.seal()  # the live process adopts the orphaned slot
    assert [s.slot for s in segments] == [other.slot]
    assert live.records == 4
    assert _read_all(live) == [r.request_id for r in left_behind]
    for segment in segments:
        live.finished(segment)
    assert live.seal() == [] and live.bytes == 0
    live.close()


def test_leftover_segments_are_counted_at_start_up_and_new_appends_go_after_them(
    tmp_path: Path,
) -> None:
    old = [make_record() for _ in range(3)]
    spool = Spool(tmp_path)
    spool.append(old)
    spool.close()
    again = Spool(tmp_path)
    assert again.records == 3
    new = make_record()
    again.append([new])
    assert _read_all(again) == [r.request_id for r in [*old, new]]
    again.close()


def test_a_line_spooled_before_migration_0002_reads_with_the_new_fields_defaulted() -> None:
    """A spool left by the previous release has no finish_reason or billed: still replayable."""
    import orjson

    from backend.usage.record import UsageRecord

    record = make_record(finish_reason="refusal", billed=False)
    old = {k: v for k, v in orjson.loads(record.to_json()).items()
           if k not in ("finish_reason", "billed")}
    parsed = UsageRecord.from_json(orjson.dumps(old))
    assert (parsed.finish_reason, parsed.billed) == (None, True)
    assert UsageRecord.from_json(record.to_json()) == record  # and new lines round-trip
