"""Reader threads running through background flushes and compactions always get correct answers."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa

from online import Field, LSMTree, TreeOptions

FIELDS = [Field("v", "int64"), Field("s", "string")]
NKEYS = 2000


def _batch(values: np.ndarray) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(values), pa.array([str(x) for x in values.tolist()])], names=["v", "s"]
    )


def test_readers_see_consistent_monotonic_rows_through_compactions(tmp_path) -> None:
    opts = TreeOptions(
        index="auto",
        memtable_bytes=20_000,
        l0_trigger=2,
        level1_bytes=60_000,
        size_ratio=3,
        t_wait_s=0.0,
    )
    tree = LSMTree(tmp_path, FIELDS, opts)
    keys = np.arange(NKEYS, dtype=np.uint64) * np.uint64(7919)
    seq = 1
    tree.write(
        seq,
        keys,
        np.zeros(NKEYS, np.int64),
        np.zeros(NKEYS, np.int64),
        _batch(np.zeros(NKEYS, np.int64)),
    )
    latest = np.zeros(NKEYS, dtype=np.int64)
    errors: list[str] = []
    stop = threading.Event()

    def reader(r: int) -> None:
        rng = np.random.default_rng(r)
        seen = np.full(NKEYS, -1, dtype=np.int64)
        while not stop.is_set():
            idx = rng.integers(0, NKEYS, 300)
            res = tree.get_many(keys[idx])
            v = res.values("v")
            if not res.found.all():
                errors.append(f"reader {r}: missing keys {keys[idx][~res.found][:5]}")
                return
            if (v < 0).any():
                errors.append(f"reader {r}: a late older event became visible")
                return
            if (v < seen[idx]).any():
                errors.append(f"reader {r}: a key went back in time")
                return
            s = res.values("s")
            if [str(x) for x in v[:20].tolist()] != list(s[:20]):
                errors.append(f"reader {r}: string column does not match its row")
                return
            seen[idx] = np.maximum(seen[idx], v)

    threads = [threading.Thread(target=reader, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    rng = np.random.default_rng(99)
    try:
        for step in range(1, 120):
            idx = np.unique(rng.integers(0, NKEYS, 300))
            seq += 1
            if step % 40 == 0:  # a full compaction on top of the background ones
                tree.compact(full=True)
            if step % 5 == 0:  # late, older events: must never replace the newer rows
                ev = np.full(len(idx), -1, np.int64)
                tree.write(seq, keys[idx], ev, ev, _batch(-np.ones(len(idx), np.int64)))
                continue
            ev = np.full(len(idx), step, np.int64)
            tree.write(seq, keys[idx], ev, ev, _batch(np.full(len(idx), step, np.int64)))
            latest[idx] = step
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    res = tree.get_many(keys)
    assert res.found.all() and np.array_equal(res.values("v"), latest)
    st = tree.stats()
    assert st["compactions"] > 0 and st["flushes"] > 0, st
    tree.close()
    tree = LSMTree(tmp_path, FIELDS, opts)
    assert np.array_equal(tree.get_many(keys).values("v"), latest)
    tree.close()
