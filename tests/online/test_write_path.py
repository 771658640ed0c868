"""The write path's shortcuts keep the latest-version rule: the no-lookup path for batches newer
than everything stored (also after a reopen, also for sstables whose manifest entry predates the
newest-time fields), and starting a new memtable instead of growing a full one."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from online import Field, LSMTree, TreeOptions
from online.manifest import Manifest

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
    real = LSMTree._compact_inputs

    def slow_compaction(self, inputs, out_level):  # noqa: ANN001 — the engine's signature
        time.sleep(0.05)
        real(self, inputs, out_level)

    monkeypatch.setattr(LSMTree, "_compact_inputs", slow_compaction)
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
