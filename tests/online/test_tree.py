"""LSMTree as a whole: flushes make rows durable, compactions keep the latest version, a reopened
tree finds everything, stats describe it, a failed background flush reaches the callers; the write
path's shortcuts keep the latest-version rule (the no-lookup path for batches newer than
everything stored, also after a reopen and for sstables whose manifest entry predates the
newest-time fields), a full memtable is frozen instead of grown, and writers stall while L0 is
full. scan_chunks: test_scan.py; the analyzer: test_analyzer.py."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

import online.tree
from online import ClosedError, Field, LSMTree, OnlineError, TreeOptions
from online.manifest import Manifest

from . import helpers

FIELDS = [Field("v", "int64")]


def _write(tree: LSMTree, seq: int, keys: list[int], ev: int, cr: int | None = None) -> None:
    """Write and flush: the stored versions then live in sstables, where only the write path's
    lookup (not the memtable's own version check) protects them."""
    n = len(keys)
    vals = pa.RecordBatch.from_arrays([pa.array([seq * 1000 + k for k in keys])], names=["v"])
    cr = ev if cr is None else cr
    tree.write(
        seq, np.array(keys, np.uint64), np.full(n, ev, np.int64), np.full(n, cr, np.int64), vals
    )
    tree.flush()


def _values(tree: LSMTree, keys: list[int]) -> list[int | None]:
    r = tree.get_many(np.array(keys, np.uint64))
    return [int(x) if ok else None for x, ok in zip(r.values("v"), r.found, strict=True)]


@pytest.mark.parametrize("strip_meta", [False, True])
def test_an_older_batch_never_replaces_a_newer_row(tmp_path, strip_meta) -> None:
    opts = TreeOptions(background=False, index="block")
    tree = LSMTree(tmp_path, FIELDS, opts)
    keys = list(range(1, 11))
    _write(tree, 1, keys, ev=100)  # empty tree: the no-lookup path
    _write(tree, 2, keys[:5], ev=200)  # newer than everything stored: the no-lookup path
    _write(tree, 3, keys, ev=150)  # older than seq 2's rows for keys 1..5: the lookup path
    assert _values(tree, keys) == [2001, 2002, 2003, 2004, 2005] + [3000 + k for k in keys[5:]]
    _write(tree, 4, keys[:2], ev=200, cr=200)  # equal times: the later seq wins the tie
    _write(tree, 5, keys[2:4], ev=200, cr=199)  # equal event time, older created: loses
    assert _values(tree, keys[:5]) == [4001, 4002, 2003, 2004, 2005]
    tree.close()
    if strip_meta:  # an sstable written before the manifest carried its newest times
        man = Manifest.load(tmp_path)
        assert man is not None
        for level in man.levels:
            for meta in level:
                del meta["max_event_ts"], meta["max_created_ts"]
        man.save(tmp_path)
    tree = LSMTree(tmp_path, FIELDS, opts)
    try:
        _write(tree, 6, keys, ev=120)  # after reopen the stored rows are still known newer
        _write(tree, 7, keys, ev=120, cr=10**6)  # late event, newest created time: still older
        _write(tree, 8, keys[2:4], ev=200, cr=150)  # equal event time, older created: loses
        assert _values(tree, keys) == [4001, 4002, 2003, 2004, 2005] + [3000 + k for k in keys[5:]]
        _write(tree, 9, keys[::2], ev=300)
        assert _values(tree, keys[:4]) == [9001, 4002, 9003, 2004]
    finally:
        tree.close()


def test_a_full_memtable_is_frozen_instead_of_grown(tmp_path) -> None:
    opts = TreeOptions(background=False, index="block", memtable_bytes=64 << 10)
    tree = LSMTree(tmp_path, FIELDS, opts)
    try:
        cap = tree._version.mems[0].capacity
        rng = np.random.default_rng(0)
        written: dict[int, int] = {}
        for seq in range(1, 40):
            keys = rng.choice(10 * cap, size=cap // 3, replace=False).tolist()
            _write(tree, seq, keys, ev=seq)
            written.update({k: seq * 1000 + k for k in keys})
            assert all(m.capacity == cap for m in tree._version.mems)
        assert tree.stats()["flushes"] >= 10
        ks = sorted(written)
        assert _values(tree, ks) == [written[k] for k in ks]
    finally:
        tree.close()


def test_writers_wait_while_l0_is_full(tmp_path, monkeypatch) -> None:
    """A compactor slower than the writer: L0 stays bounded by l0_stop_writes (plus the frozen
    memtables that may still be flushed), the waits show in stats, and nothing is lost."""
    real = LSMTree._compact

    def slow_compaction(self, c):  # noqa: ANN001 — the engine's signature
        time.sleep(0.05)
        real(self, c)

    monkeypatch.setattr(LSMTree, "_compact", slow_compaction)
    opts = TreeOptions(
        index="block", memtable_bytes=4 << 10, l0_trigger=2, l0_stop_writes=4, max_immutable=1
    )
    tree = LSMTree(tmp_path, FIELDS, opts)
    try:
        written: dict[int, int] = {}
        worst = 0
        for seq in range(1, 120):
            keys = list(range(seq * 100, seq * 100 + 60))
            n = len(keys)
            vals = pa.RecordBatch.from_arrays([pa.array([seq * 1000 + k for k in keys])], ["v"])
            ev = np.full(n, seq, np.int64)
            tree.write(seq, np.array(keys, np.uint64), ev, ev, vals)
            written.update({k: seq * 1000 + k for k in keys})
            worst = max(worst, len(tree._version.levels[0]))
        st = tree.stats()
        assert st["flushes"] > 20 and st["write_stalls"] > 0
        assert worst <= opts.l0_stop_writes + opts.max_immutable + 1, worst
        ks = sorted(written)
        assert _values(tree, ks) == [written[k] for k in ks]
    finally:
        tree.close()


def _fill(tree: LSMTree, n: int = 3000, batches: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    keys = rng.choice(2**40, n * batches, replace=False).astype(np.uint64)
    for b in range(batches):
        k = keys[b * n : (b + 1) * n]
        ts = np.zeros(n, np.int64)
        tree.write(b + 1, k, ts, ts, helpers.make_batch(rng, n, b))
        tree.flush()
    return keys


def test_stats_describe_levels_models_and_lookups(tmp_path) -> None:
    tree = LSMTree(tmp_path, helpers.FIELDS, TreeOptions(index="learned", background=False))
    keys = _fill(tree)
    tree.get_many(keys[:100])
    tree.get_many(keys[:100] + np.uint64(2**41))  # misses
    st = tree.stats()
    assert st["index"] == "learned" and st["flushes"] == 3 and st["durable_seq"] == 3
    l0 = st["levels"][0]
    assert l0["sstables"] == 3 and l0["keys"] == len(keys)
    assert l0["index_modes"] == {"learned": 3}
    assert l0["plr_segments"] >= 3 and l0["model_bytes"] > 0
    assert l0["lookups_positive"] == 100 and l0["lookups_negative"] >= 100
    tree.compact(full=True)
    st = tree.stats()
    assert st["compactions"] == 1
    assert st["levels"][1]["keys"] == len(keys) and st["levels"][0]["sstables"] == 0
    assert st["levels"][0]["lookups_positive"] == 100  # retired tables keep their counts
    tree.close()


def _batch(seq: int, keys: list[int]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([seq * 1000 + k for k in keys])], names=["v"])


def _put(tree: LSMTree, seq: int, keys: list[int], ev: int) -> None:
    n = len(keys)
    ts = np.full(n, ev, np.int64)
    tree.write(seq, np.array(keys, np.uint64), ts, ts, _batch(seq, keys))


def test_flush_makes_rows_durable_and_a_reopen_finds_them(tmp_path) -> None:
    opts = TreeOptions(index="block", background=False)
    tree = LSMTree(tmp_path, FIELDS, opts)
    _put(tree, 1, [1, 2, 3], ev=10)
    _put(tree, 2, [3, 4], ev=20)
    assert (tree.last_seq, tree.durable_seq) == (2, 0)
    assert tree.stats()["memtable"]["rows"] == 4 and not list(tmp_path.glob("*.sst"))
    tree.flush()
    st = tree.stats()
    assert (tree.durable_seq, st["flushes"], st["memtable"]["rows"]) == (2, 1, 0)
    assert st["levels"][0]["sstables"] == 1 and len(list(tmp_path.glob("*.sst"))) == 1
    tree.flush()  # nothing new: no empty sstable
    assert tree.stats()["flushes"] == 1
    _put(tree, 3, [5], ev=30)
    tree.close()  # flushes the memtable
    tree = LSMTree(tmp_path, FIELDS, opts)
    assert (tree.last_seq, tree.durable_seq) == (3, 3)
    assert _values(tree, [1, 2, 3, 4, 5, 6]) == [1001, 1002, 2003, 2004, 3005, None]
    tree.close()


def test_compactions_merge_l0_into_one_run_keeping_the_latest_rows(tmp_path) -> None:
    opts = TreeOptions(index="block", background=False, l0_trigger=2)
    tree = LSMTree(tmp_path, FIELDS, opts)
    expect: dict[int, int] = {}
    for seq in range(1, 8):
        keys = list(range(seq * 5, seq * 5 + 20))
        _put(tree, seq, keys, ev=seq)
        tree.flush()  # an L0 sstable; the second one triggers an L0 -> L1 compaction
        expect.update({k: seq * 1000 + k for k in keys})
    st = tree.stats()
    assert st["compactions"] >= 3 and st["levels"][0]["sstables"] < 2
    assert st["levels"][1]["sstables"] == 1
    assert len(list(tmp_path.glob("*.sst"))) == sum(lv["sstables"] for lv in st["levels"])
    ks = sorted(expect)
    assert _values(tree, ks) == [expect[k] for k in ks]
    tree.compact(full=True)
    st = tree.stats()
    assert [lv["sstables"] for lv in st["levels"]] == [0, 1]
    assert st["levels"][1]["keys"] == len(expect)
    tree.close()
    tree = LSMTree(tmp_path, FIELDS, opts)
    assert _values(tree, ks) == [expect[k] for k in ks]
    assert tree.scan().column("key").to_pylist() == ks
    tree.close()


def test_a_failed_background_flush_reaches_the_callers(tmp_path, monkeypatch) -> None:
    def broken(*args: object) -> dict:
        raise OSError("disk on fire")

    monkeypatch.setattr(online.tree, "write_sstable", broken)
    opts = TreeOptions(index="block", memtable_bytes=1 << 10, max_immutable=1)
    tree = LSMTree(tmp_path, FIELDS, opts)
    with pytest.raises(OnlineError, match="background flush/compaction .* failed.*disk on fire"):
        for seq in range(1, 200):
            _put(tree, seq, list(range(seq * 50, seq * 50 + 50)), ev=seq)
            time.sleep(0.002)
    with pytest.raises(OnlineError, match="disk on fire"):
        tree.get_many(np.array([1], np.uint64))
    tree.close()  # does not flush after the failure, releases the directory
    with pytest.raises(ClosedError):
        tree.get_many(np.array([1], np.uint64))
    monkeypatch.undo()
    tree = LSMTree(tmp_path, FIELDS, opts)
    assert tree.durable_seq == 0
    tree.close()
