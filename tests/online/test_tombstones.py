"""Tombstones and purges of the online tree (online/tombstones.py): reads, scans, merges,
compaction at the deepest level, recovery and the ttl purge."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from online import Field, LSMTree, TreeOptions
from online.tombstones import TOMBSTONE_BIT

FIELDS = [Field("x", "int64"), Field("s", "string")]


def _opts(**kw: object) -> TreeOptions:
    base = {"background": False, "index": "block", "t_wait_s": 0.0}
    base.update(kw)
    return TreeOptions(**base)  # type: ignore[arg-type]


def _write(tree: LSMTree, seq: int, keys: list[int], ev: int, marker: str = "v") -> None:
    n = len(keys)
    feats = pa.table({"x": pa.array(keys, pa.int64()), "s": [f"{marker}{k}" for k in keys]})
    k = np.array(keys, dtype=np.uint64)
    tree.write(seq, k, np.full(n, ev, np.int64), np.full(n, ev, np.int64), feats)


def _delete(tree: LSMTree, seq: int, keys: list[int], ev: int) -> None:
    n = len(keys)
    full = np.full(n, ev, np.int64)
    tree.delete(seq, np.array(keys, dtype=np.uint64), full, full)


def test_deleted_keys_read_not_found_in_memtable_and_sstables(tmp_path):
    with LSMTree(tmp_path / "t", FIELDS, _opts()) as tree:
        _write(tree, 1, [1, 2, 3], 100)
        tree.flush()
        _delete(tree, 2, [2, 9], 200)
        res = tree.get_many(np.array([1, 2, 3, 9], dtype=np.uint64))
        assert res.found.tolist() == [True, False, True, False]
        assert tree.scan().column("key").to_pylist() == [1, 3]
        tree.flush()  # the tombstone now in L0 above the row in L0
        res = tree.get_many(np.array([1, 2, 3], dtype=np.uint64))
        assert res.found.tolist() == [True, False, True]
        assert [c.num_rows for c in tree.scan_chunks(1)] and sum(
            c.num_rows for c in tree.scan_chunks(1)
        ) == 2


def test_a_later_event_starts_a_new_history(tmp_path):
    with LSMTree(tmp_path / "t", FIELDS, _opts()) as tree:
        _write(tree, 1, [5], 100, "old")
        tree.flush()
        _delete(tree, 2, [5], 200)
        tree.flush()
        _write(tree, 3, [5], 300, "new")
        res = tree.get_many(np.array([5], dtype=np.uint64))
        assert res.found.tolist() == [True] and res.values("s").tolist() == ["new5"]
        tree.compact(full=True)
        res = tree.get_many(np.array([5], dtype=np.uint64))
        assert res.values("s").tolist() == ["new5"]


def test_full_compaction_drops_tombstones_and_older_versions(tmp_path):
    with LSMTree(tmp_path / "t", FIELDS, _opts()) as tree:
        _write(tree, 1, list(range(10)), 100, "marker")
        tree.compact(full=True)
        _delete(tree, 2, [3, 4], 200)
        tree.compact(full=True)
        assert tree.stats()["purged"]["tombstones"] == 2
        keys = tree.scan().column("key").to_pylist()
        assert keys == [0, 1, 2, 5, 6, 7, 8, 9]
        assert len(tree._version.tables()) == 1
        t = tree._version.tables()[0][1]
        assert len(t) == 8 and not (t.records[:, 2] & TOMBSTONE_BIT).any()
        blob = b"".join(p.read_bytes() for p in (tmp_path / "t").iterdir() if p.is_file())
        assert b"marker3" not in blob and b"marker5" in blob


def test_tombstones_survive_reopen(tmp_path):
    with LSMTree(tmp_path / "t", FIELDS, _opts()) as tree:
        _write(tree, 1, [1, 2], 100)
        tree.flush()
        _delete(tree, 2, [1], 200)
    with LSMTree(tmp_path / "t", FIELDS, _opts()) as tree:
        assert tree.get_many(np.array([1, 2], dtype=np.uint64)).found.tolist() == [False, True]
        assert tree.durable_seq == 2


def test_tombstone_with_fields_is_returned(tmp_path):
    with LSMTree(tmp_path / "t", FIELDS, _opts()) as tree:
        _write(tree, 1, [1], 100)
        feats = pa.table({"x": pa.nulls(1, pa.int64()), "s": ["gone"]})
        one = np.array([200], np.int64)
        tree.delete(2, np.array([1], dtype=np.uint64), one, one, feats)
        res = tree.get_many(np.array([1], dtype=np.uint64))
        assert res.found.tolist() == [True] and res.values("s").tolist() == ["gone"]
        assert tree.scan().num_rows == 0


def test_stale_delete_seq_is_refused(tmp_path):
    with LSMTree(tmp_path / "t", FIELDS, _opts()) as tree:
        _write(tree, 5, [1], 100)
        with pytest.raises(Exception, match="not above"):
            _delete(tree, 5, [1], 200)


def test_ttl_purge_at_deepest_compaction(tmp_path):
    import time

    now = time.time_ns()
    day = 86_400 * 10**9
    with LSMTree(tmp_path / "t", FIELDS, _opts(purge_ttl_ns=day)) as tree:
        _write(tree, 1, [1, 2], now - 3 * day, "old")
        _write(tree, 2, [3], now, "fresh")
        tree.flush()
        assert tree.get_many(np.array([1], dtype=np.uint64)).found.tolist() == [True]
        tree.compact(full=True)
        assert tree.scan().column("key").to_pylist() == [3]
        assert tree.stats()["purged"]["expired"] == 2


def test_no_purge_without_ttl(tmp_path):
    with LSMTree(tmp_path / "t", FIELDS, _opts()) as tree:
        _write(tree, 1, [1, 2], 1)
        tree.compact(full=True)
        assert tree.scan().num_rows == 2
