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


def test_ttl_purge_with_a_kept_field_keeps_the_slot_and_frees_the_rest(tmp_path):
    import time

    now = time.time_ns()
    day = 86_400 * 10**9
    fields = [Field("name", "string"), Field("x", "int64"), Field("s", "string")]
    opts = _opts(purge_ttl_ns=day, purge_keep_field="name")
    with LSMTree(tmp_path / "t", fields, opts) as tree:

        def write(seq: int, keys: list[int], ev: int, marker: str) -> None:
            feats = pa.table(
                {
                    "name": [f"k{k}" for k in keys],
                    "x": pa.array(keys, pa.int64()),
                    "s": [marker * 200 for _ in keys],
                }
            )
            evs = np.full(len(keys), ev, np.int64)
            tree.write(seq, np.array(keys, dtype=np.uint64), evs, evs, feats)

        write(1, list(range(100)), now - 3 * day, "o")
        write(2, [100, 101], now, "f")
        tree.compact(full=True)
        write(3, [5], now - 2 * day, "o")  # expired too, a later version of key 5
        tree.compact(full=True)
        assert tree.stats()["purged"]["expired"] == 101
        res = tree.get_many(np.array([3, 5, 100, 7777], dtype=np.uint64))
        assert res.found.tolist() == [True, True, True, False]  # the slots stay owned
        assert res.values("name").tolist()[:3] == ["k3", "k5", "k100"]
        assert res.valid("x").tolist()[:3] == [False, False, True]
        assert res.valid("s").tolist()[:3] == [False, False, True]
        assert res.event_ts[1] == now - 2 * day  # its own time: reads answer it as expired
        assert tree.scan().column("key").to_pylist() == [100, 101]
        write(4, [3], now, "n")  # a new history replaces the kept slot
        assert tree.get_many(np.array([3], dtype=np.uint64)).values("x").tolist() == [3]
        tree.compact(full=True)
        assert tree.stats()["purged"]["expired"] == 101  # kept slots are not purged again
        assert sorted(tree.scan().column("key").to_pylist()) == [3, 100, 101]
    with LSMTree(tmp_path / "t", fields, opts) as tree:  # reopen: the same answers
        res = tree.get_many(np.array([5, 3], dtype=np.uint64))
        assert res.found.tolist() == [True, True] and res.valid("x").tolist() == [False, True]


def test_a_kept_field_must_be_a_field(tmp_path):
    with pytest.raises(Exception, match="purge_keep_field 'nope' is not a field"):
        LSMTree(tmp_path / "t", FIELDS, _opts(purge_ttl_ns=1, purge_keep_field="nope"))
