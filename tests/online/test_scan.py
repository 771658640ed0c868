"""scan_chunks: key-range chunks of about `rows` rows that concatenate to scan(), over several
sstables, levels and memtables, all from the Version current at the call."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from online import LSMTree, TreeOptions
from online.scan import _key_ranges

from .helpers import FIELDS, make_batch

OPTS = TreeOptions(index="block", background=False, l0_trigger=10, verify_checksums=False)


def _write(tree: LSMTree, seq: int, keys: np.ndarray, rng: np.random.Generator) -> None:
    ts = np.full(len(keys), seq, np.int64)
    tree.write(seq, keys, ts, ts, make_batch(rng, len(keys), seq))


def _tree_with_runs(path) -> LSMTree:
    """An L1 run, three overlapping L0 sstables and a memtable, with updated keys in each."""
    rng = np.random.default_rng(11)
    tree = LSMTree(path, FIELDS, OPTS)
    _write(tree, 1, rng.choice(2**40, 3000, replace=False).astype(np.uint64), rng)
    tree.compact(full=True)  # -> L1
    for seq in (2, 3, 4):
        _write(tree, seq, rng.choice(2**40, 1500, replace=False).astype(np.uint64), rng)
        tree.flush()
    old = tree.scan().column("key").to_numpy()
    _write(tree, 5, np.concatenate([old[::7], np.arange(5, 400, dtype=np.uint64)]), rng)
    st = tree.stats()
    assert [lv["sstables"] for lv in st["levels"]] == [3, 1] and st["memtable"]["rows"] > 0
    return tree


@pytest.mark.parametrize("rows", [1, 400, 1000, 10**6])
def test_chunks_concatenate_to_the_scan(tmp_path, rows: int) -> None:
    tree = _tree_with_runs(tmp_path)
    whole = tree.scan()
    chunks = list(tree.scan_chunks(rows))
    assert pa.concat_tables(chunks).equals(whole)
    keys = [c.column("key").to_numpy() for c in chunks]
    assert all(len(k) for k in keys)
    assert all(a[-1] < b[0] for a, b in zip(keys, keys[1:], strict=False))  # disjoint ranges
    sizes = [len(c) for c in chunks]
    assert max(sizes) <= max(2 * rows, 64), sizes  # about `rows`: sampled bounds
    if rows >= len(whole):
        assert len(chunks) == 1
    elif rows >= 400:
        assert len(chunks) >= len(whole) // rows, sizes
    tree.close()


def test_chunks_come_from_the_version_current_at_the_call(tmp_path) -> None:
    tree = _tree_with_runs(tmp_path)
    whole = tree.scan()
    chunks = tree.scan_chunks(500)
    first = next(chunks)
    rng = np.random.default_rng(12)
    _write(tree, 6, np.arange(10**6, 10**6 + 2000, dtype=np.uint64), rng)  # memtable
    tree.compact(full=True)  # the scanned sstables are compacted away
    assert pa.concat_tables([first, *chunks]).equals(whole)
    assert len(tree.scan()) == len(whole) + 2000
    tree.close()


def test_key_ranges_cover_every_key_once() -> None:
    rng = np.random.default_rng(3)
    runs = [np.unique(rng.integers(0, 2**64 - 1, n, dtype=np.uint64)) for n in (5, 900)]
    assert _key_ranges([], 10) == [] and _key_ranges(runs, 10**6) == [(0, -1)]
    ranges = _key_ranges(runs, 100)
    assert ranges[0][0] == 0 and ranges[-1][1] == -1
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert len(ranges) >= 5


def _resident_kb(path: str) -> int:
    """Resident kB of this process's mappings of the file at `path` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
                inside = line.rstrip().endswith(path)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/smaps"), reason="Linux only")
def test_scan_releases_the_pages_it_has_passed(tmp_path) -> None:
    rng = np.random.default_rng(5)
    tree = LSMTree(tmp_path, FIELDS, OPTS)
    _write(tree, 1, np.arange(200_000, dtype=np.uint64), rng)
    tree.flush()
    (sst,) = tmp_path.glob("*.sst")
    size_kb = sst.stat().st_size // 1024
    rows = 0
    for chunk in tree.scan_chunks(20_000):
        rows += len(chunk)
        assert _resident_kb(str(sst)) < size_kb // 2  # at most about one range resident
    assert rows == 200_000
    assert _resident_kb(str(sst)) < size_kb // 8  # all passed: released
    assert tree.scan().num_rows == 200_000  # released pages read back from the file
    tree.close()
