"""Opening a tree's directory (recovery.py): corrupt, missing and orphan files, the directory
lock, and the deletion of compacted files once unreferenced."""

from __future__ import annotations

import json

import numpy as np
import pytest

from online import LSMTree, OnlineCorruptionError, OnlineError, TreeOptions

from .helpers import FIELDS, make_batch

OPTS = TreeOptions(index="learned", background=False)


def _tree_with_data(path) -> list[str]:
    tree = LSMTree(path, FIELDS, OPTS)
    rng = np.random.default_rng(0)
    for seq in (1, 2):
        keys = np.arange(100, dtype=np.uint64) + np.uint64(seq * 50)
        ts = np.zeros(100, np.int64)
        tree.write(seq, keys, ts, ts, make_batch(rng, 100, seq))
        tree.flush()
    tree.close()
    return sorted(p.name for p in path.glob("*.sst"))


def test_flipped_byte_in_an_sstable_names_the_file(tmp_path) -> None:
    name = _tree_with_data(tmp_path)[0]
    p = tmp_path / name
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(OnlineCorruptionError, match=name) as e:
        LSMTree(tmp_path, FIELDS, OPTS)
    assert "CRC32C" in str(e.value) and e.value.path.endswith(name)


def test_truncated_sstable_names_the_file(tmp_path) -> None:
    name = _tree_with_data(tmp_path)[-1]
    p = tmp_path / name
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(OnlineCorruptionError, match=f"{name}.*size"):
        LSMTree(tmp_path, FIELDS, OPTS)


def test_unreadable_sstable_without_checksum_verification_names_the_file(tmp_path) -> None:
    name = _tree_with_data(tmp_path)[0]
    p = tmp_path / name
    p.write_bytes(b"\0" * p.stat().st_size)
    opts = TreeOptions(index="block", background=False, verify_checksums=False)
    with pytest.raises(OnlineCorruptionError, match=f"{name}.*not a readable sstable"):
        LSMTree(tmp_path, FIELDS, opts)


def test_missing_sstable_names_the_file(tmp_path) -> None:
    name = _tree_with_data(tmp_path)[0]
    (tmp_path / name).unlink()
    with pytest.raises(OnlineCorruptionError, match=f"{name}.*missing"):
        LSMTree(tmp_path, FIELDS, OPTS)


@pytest.mark.parametrize("damage", ["garbage", "crc", "truncate"])
def test_corrupt_manifest_names_the_manifest(tmp_path, damage) -> None:
    _tree_with_data(tmp_path)
    p = tmp_path / "MANIFEST"
    if damage == "garbage":
        p.write_text("{not json")
    elif damage == "truncate":
        p.write_text(p.read_text()[:40])
    else:
        outer = json.loads(p.read_text())
        outer["body"] = outer["body"].replace('"durable_seq": 2', '"durable_seq": 3')
        p.write_text(json.dumps(outer))
    with pytest.raises(OnlineCorruptionError, match="MANIFEST"):
        LSMTree(tmp_path, FIELDS, OPTS)


def test_orphan_and_temp_files_are_removed_on_open(tmp_path) -> None:
    live = _tree_with_data(tmp_path)
    (tmp_path / "000999.sst").write_bytes(b"half written")
    (tmp_path / "000998.sst.tmp").write_bytes(b"x")
    (tmp_path / "MANIFEST.tmp").write_bytes(b"x")
    tree = LSMTree(tmp_path, FIELDS, OPTS)
    assert sorted(p.name for p in tmp_path.glob("*.sst")) == live
    assert not list(tmp_path.glob("*.tmp"))
    assert tree.get_many(np.array([60], dtype=np.uint64)).found.all()
    tree.write(
        3,
        np.array([1], np.uint64),
        np.zeros(1, np.int64),
        np.zeros(1, np.int64),
        make_batch(np.random.default_rng(1), 1, 3),
    )
    tree.flush()  # new file numbers never collide with a removed orphan
    assert "001000.sst" in {p.name for p in tmp_path.glob("*.sst")}
    tree.close()


def test_compacted_files_are_deleted_once_unreferenced(tmp_path) -> None:
    _tree_with_data(tmp_path)
    tree = LSMTree(tmp_path, FIELDS, OPTS)
    held = tree.get_many(np.arange(300, dtype=np.uint64))  # holds the old sstables (strings)
    tree.compact(full=True)
    assert len(list(tmp_path.glob("*.sst"))) == 3
    strings = held.values("s")  # the old files are still readable
    assert sum(x is not None for x in strings) > 0
    del held
    assert len(list(tmp_path.glob("*.sst"))) == 1
    tree.close()


def test_a_directory_is_opened_by_one_tree_at_a_time(tmp_path) -> None:
    tree = LSMTree(tmp_path, FIELDS, OPTS)
    with pytest.raises(OnlineError, match="already open"):
        LSMTree(tmp_path, FIELDS, OPTS)
    tree.close()
    LSMTree(tmp_path, FIELDS, OPTS).close()
