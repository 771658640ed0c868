"""The commit log: framing, recovery, torn and corrupt tails, rotation, release, group commit."""

from __future__ import annotations

import logging
import random
import threading

import pyarrow as pa
import pytest

from store.commitlog import RECORD_HEADER, CommitLog, scan_segment
from store.errors import CorruptionError


def _table(seq: int, rows: int = 5) -> pa.Table:
    return pa.table(
        {"k": pa.array(range(seq * 100, seq * 100 + rows), pa.int64()), "s": [f"r{seq}"] * rows}
    )


def _write(path, seqs, segment_bytes=1 << 30, views=("a", "b")) -> CommitLog:
    log = CommitLog(path, segment_bytes)
    assert list(log.recover()) == []
    for seq in seqs:
        log.append(seq, views[seq % len(views)], _table(seq, rows=1 + seq % 7))
        log.sync(seq)
    return log


def _read(path) -> tuple[CommitLog, list[tuple[int, str, pa.Table]]]:
    log = CommitLog(path)
    return log, [(r.seq, r.view, r.table()) for r in log.recover()]


def test_records_roundtrip_in_seq_order(tmp_path) -> None:
    _write(tmp_path, range(1, 21)).close()
    log, recs = _read(tmp_path)
    assert [s for s, _, _ in recs] == list(range(1, 21))
    for seq, view, table in recs:
        assert view == ("a", "b")[seq % 2]
        assert table.equals(_table(seq, rows=1 + seq % 7))
    log.append(21, "a", _table(21))
    log.sync(21)
    log.close()
    assert [s for s, _, _ in _read(tmp_path)[1]] == list(range(1, 22))


def test_torn_tail_at_random_offsets_keeps_exactly_the_whole_records(tmp_path, caplog) -> None:
    _write(tmp_path, range(1, 31)).close()
    (segment,) = tmp_path.glob("*.log")
    data = segment.read_bytes()
    spans, end = scan_segment(data)
    assert end == len(data) and len(spans) == 30
    rng = random.Random(11)
    for cut in sorted(rng.sample(range(len(data)), 12)) + [len(data)]:
        segment.write_bytes(data[:cut])
        with caplog.at_level(logging.WARNING, logger="store.commitlog"):
            log, recs = _read(tmp_path)
        expected = [s.seq for s in spans if s.end <= cut]
        assert [s for s, _, _ in recs] == expected
        whole = max([s.end for s in spans if s.end <= cut], default=0)
        assert segment.stat().st_size == whole
        if whole < cut:
            assert "cutting" in caplog.text
        # the log accepts new records after the cut and they survive the next recovery
        nxt = (expected[-1] if expected else 0) + 1
        log.append(nxt, "a", _table(nxt))
        log.sync(nxt)
        log.close()
        assert [s for s, _, _ in _read(tmp_path)[1]] == expected + [nxt]
        caplog.clear()


def test_corrupt_bytes_in_the_tail_cut_from_the_damaged_record(tmp_path) -> None:
    _write(tmp_path, range(1, 31)).close()
    (segment,) = tmp_path.glob("*.log")
    data = segment.read_bytes()
    spans, _ = scan_segment(data)
    rng = random.Random(5)
    for pos in rng.sample(range(len(data)), 15):
        damaged = bytearray(data)
        damaged[pos] ^= 1 << rng.randrange(8)
        segment.write_bytes(bytes(damaged))
        log, recs = _read(tmp_path)
        log.close()
        assert [s for s, _, _ in recs] == [s.seq for s in spans if s.end <= pos]


def test_rotation_release_and_damage_before_the_tail(tmp_path) -> None:
    log = _write(tmp_path, range(1, 41), segment_bytes=2000)
    segments = sorted(tmp_path.glob("*.log"))
    assert len(segments) > 3
    assert segments[0].name == f"{1:020d}.log"
    # views a (even seqs) durable up to 20, b (odd seqs) up to 39: only segments whose records
    # are all durable go, and never the active one
    deleted = log.release(lambda view, seq: seq <= (20 if view == "a" else 39))
    assert deleted >= 1
    log.close()
    log, recs = _read(tmp_path)
    seqs = [s for s, _, _ in recs]
    assert seqs == list(range(seqs[0], 41)) and 1 < seqs[0] <= 22  # 22: first non-durable
    log.close()
    first = sorted(tmp_path.glob("*.log"))[0]
    raw = bytearray(first.read_bytes())
    raw[RECORD_HEADER.size + 3] ^= 0xFF
    first.write_bytes(bytes(raw))
    with pytest.raises(CorruptionError, match=first.name):
        _read(tmp_path)


def test_concurrent_appends_share_syncs_and_all_survive(tmp_path) -> None:
    log = CommitLog(tmp_path)
    list(log.recover())
    lock = threading.Lock()
    next_seq = [1]
    acked: list[int] = []

    def worker() -> None:
        for _ in range(25):
            with lock:
                seq = next_seq[0]
                next_seq[0] += 1
                log.append(seq, "a", _table(seq))
            log.sync(seq)
            acked.append(seq)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.stats()["synced_seq"] == 100
    log.close()
    assert sorted(acked) == list(range(1, 101))
    assert [s for s, _, _ in _read(tmp_path)[1]] == list(range(1, 101))
