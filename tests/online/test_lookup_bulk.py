"""LookupResult.columns (bulk decode of several features) against the per-feature accessors.

Real trees: rows in the memtable and in sstables, rows written before fields were appended (old
layout, read null), nulls, misses, NaN/Inf, every dtype, and bitmaps of 1, 2 and 3 bytes (the
struct reads 1/2/4/8-byte bitmaps as an int and others as bytes). Both decode paths are covered:
n <= COLUMNS_SMALL_N (row by row) and larger n (by column).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from online import Field, LSMTree, TreeOptions
from online.lookup import COLUMNS_SMALL_N

DTYPES = ["float64", "int32", "string", "float32[3]", "bool", "timestamp", "int64", "float32"]
OPTS = TreeOptions(background=False, t_wait_s=0.0)


def fields_of(count: int) -> list[Field]:
    return [Field(f"x{i}", DTYPES[i % len(DTYPES)]) for i in range(count)]


def batch(rng: np.random.Generator, fields: list[Field], n: int) -> pa.RecordBatch:
    cols = []
    for f in fields:
        null = rng.random(n) < 0.25
        if f.dtype == "float64":
            v = rng.normal(size=n)
            v[rng.random(n) < 0.2] = rng.choice([np.nan, np.inf, -np.inf])
            cols.append(pa.array(v, mask=null))
        elif f.dtype == "float32":
            cols.append(pa.array(rng.normal(size=n).astype(np.float32), mask=null))
        elif f.dtype in ("int32", "int64"):
            cols.append(pa.array(rng.integers(-(2**31), 2**31 - 1, n), mask=null).cast(f.dtype))
        elif f.dtype == "bool":
            cols.append(pa.array(rng.random(n) < 0.5, mask=null))
        elif f.dtype == "timestamp":
            ts = rng.integers(-(10**18), 4 * 10**18, n)
            cols.append(pa.array(ts, type=pa.timestamp("ns", tz="UTC"), mask=null))
        elif f.dtype == "string":
            cols.append(pa.array([None if z else f"s{i}é" for i, z in enumerate(null)]))
        else:
            w = f.vector_width
            flat = pa.array(rng.normal(size=n * w).astype(np.float32))
            cols.append(pa.FixedSizeListArray.from_arrays(flat, w, mask=pa.array(null)))
    return pa.RecordBatch.from_arrays(cols, names=[f.name for f in fields])


def write(tree: LSMTree, rng, fields, keys: np.ndarray, seq: int) -> None:
    n = len(keys)
    ev = rng.integers(1, 10**18, n)
    tree.write(seq, keys.astype(np.uint64), ev, ev, batch(rng, fields, n))


def reference(res, name: str) -> tuple[list, list[bool]]:
    vals, valid = res.values(name).tolist(), res.valid(name).tolist()
    return [v if ok else None for v, ok in zip(vals, valid, strict=True)], valid


def same(a, b) -> bool:
    """Equal values and equal Python types; NaN equals NaN."""
    if isinstance(a, list) or isinstance(b, list):
        return (
            type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))  # type: ignore[arg-type]
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


@pytest.mark.parametrize("nfields", [6, 9, 20])  # bitmap of 1, 2, 3 bytes
def test_columns_equal_the_accessors(tmp_path, nfields: int) -> None:
    rng = np.random.default_rng(nfields)
    old = fields_of(nfields - 2)
    tree = LSMTree(tmp_path / "t", old, OPTS)
    write(tree, rng, old, np.arange(0, 300, 3), 1)
    tree.flush()  # sstable of the old layout
    tree.close()
    fields = fields_of(nfields)  # two appended fields: old rows read null for them
    tree = LSMTree(tmp_path / "t", fields, OPTS)
    write(tree, rng, fields, np.arange(150, 450, 2), 2)
    tree.flush()
    write(tree, rng, fields, np.arange(100, 200, 5), 3)  # stays in the memtable
    names = [f.name for f in fields]
    try:
        for n in [0, 1, 2, COLUMNS_SMALL_N, COLUMNS_SMALL_N + 1, 100]:
            for trial in range(6):
                keys = rng.integers(0, 500, n).astype(np.uint64)
                res = tree.get_many(keys)
                order = list(rng.permutation(names)) if trial % 2 else names
                if trial >= 4:  # only fixed-width scalars: the one-comprehension path of n == 1
                    order = [f.name for f in fields if f.dtype != "string" and not f.vector_width]
                    order = order[trial % 3 :]
                got = res.columns(order)
                assert len(got) == len(order)
                for name, (vals, valid) in zip(order, got, strict=True):
                    ref_vals, ref_valid = reference(res, name)
                    assert valid == ref_valid, (n, name)
                    assert all(type(v) is bool for v in valid)
                    assert same(vals, ref_vals), (n, name, vals, ref_vals)
        res = tree.get_many(np.arange(0, 40, dtype=np.uint64))
        assert res.columns([]) == []
        with pytest.raises(Exception, match="unknown feature 'nope'"):
            res.columns(["x0", "nope"])
    finally:
        tree.close()


def test_columns_all_valid_fast_path(tmp_path) -> None:
    """Every row found and present: lists of True, values as the accessors give them."""
    rng = np.random.default_rng(7)
    fields = fields_of(8)
    tree = LSMTree(tmp_path / "t", fields, OPTS)
    b = batch(rng, fields, 50)
    full = pa.RecordBatch.from_arrays(
        [c.fill_null(c.drop_null()[0]) for c in b.columns], names=b.schema.names
    )
    keys = np.arange(50, dtype=np.uint64)
    tree.write(1, keys, np.ones(50, np.int64), np.ones(50, np.int64), full)
    try:
        for n in (1, 50):
            res = tree.get_many(keys[:n])
            for name, (vals, valid) in zip(
                [f.name for f in fields], res.columns([f.name for f in fields]), strict=True
            ):
                assert valid == [True] * n
                assert same(vals, reference(res, name)[0])
    finally:
        tree.close()


@pytest.mark.parametrize("flush", [False, True])
def test_strings_from_one_or_several_sources_match_what_was_written(tmp_path, flush) -> None:
    """values() and columns() of a string feature read per source without grouping when every row
    comes from one source; checked against the written text (empty, non-ASCII, null)."""
    rng = np.random.default_rng(11)
    fields = [Field("s", "string"), Field("x", "int64")]
    tree = LSMTree(tmp_path / "t", fields, OPTS)
    n = 60
    text = ["" if i % 7 == 0 else f"é{i}日本\U0001f600" * (i % 4) for i in range(n)]
    text = [None if i % 11 == 5 else t for i, t in enumerate(text)]
    keys = np.arange(n, dtype=np.uint64)
    cols = [pa.array(text, type=pa.large_string()), pa.array(np.arange(n))]
    tree.write(
        1,
        keys,
        np.ones(n, np.int64),
        np.ones(n, np.int64),
        pa.RecordBatch.from_arrays(cols, names=["s", "x"]),
    )
    if flush:
        tree.flush()  # one sstable; then half the keys again in the memtable: two sources
    try:
        for q in (rng.integers(0, n + 10, 40), np.arange(n), np.array([3, 3, 70, 5, 0])):
            res = tree.get_many(q.astype(np.uint64))
            want = [text[k] if k < n else None for k in q.tolist()]
            assert res.values("s").tolist() == want
            assert res.columns(["s"])[0][0] == want
        if flush:
            half = keys[::2]
            tree.write(
                2,
                half,
                np.ones(len(half), np.int64),
                np.ones(len(half), np.int64),
                pa.RecordBatch.from_arrays([c.take(half) for c in cols], names=["s", "x"]),
            )
            res = tree.get_many(keys)
            assert res.values("s").tolist() == text
            assert res.columns(["s"])[0][0] == text
    finally:
        tree.close()
