"""numba kernels against numpy / dict oracles (the sstable search: test_sstable.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from online import Field
from online import _kernels as K
from online.bloom import BloomFilter
from online.memtable import Memtable
from online.merge import Run, merge_runs
from online.schema import Layout

from .test_plr import ADVERSARIAL

LAYOUT = Layout([Field("x", "int64")])


def _records(keys: np.ndarray, ev=None) -> np.ndarray:
    n = len(keys)
    recs = np.zeros((n, LAYOUT.rowwords), dtype=np.int64)
    recs[:, 0] = ev if ev is not None else 1
    recs[:, 2] = 1
    recs[:, 4] = keys.astype(np.int64)  # field x (offset 32) = the key, as a marker
    return recs


def _probe(keys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Present keys, their neighbours, the extremes and random 64-bit values."""
    u = np.uint64
    near = np.concatenate([keys + u(1), keys - u(1)])
    extreme = np.array([0, 1, 2**63, 2**64 - 2, 2**64 - 1], dtype=u)
    rand = rng.integers(0, 2**64 - 1, 300, dtype=u, endpoint=True)
    q = np.concatenate([rng.choice(keys, 500), near[:1000], extreme, rand])
    rng.shuffle(q)
    return q


def test_binary_search_baseline_matches_searchsorted() -> None:
    keys = ADVERSARIAL["lognormal"]
    q = _probe(keys, np.random.default_rng(2))
    out = np.empty(len(q), dtype=np.int64)
    K.binary_search_many(keys, q, out)
    pos = np.searchsorted(keys, q).clip(0, len(keys) - 1)
    assert np.array_equal(out, np.where(keys[pos] == q, pos, -1))


def test_bloom_has_no_false_negatives_and_few_false_positives() -> None:
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 2**64 - 1, 20000, dtype=np.uint64)
    b = BloomFilter(keys, 10)
    assert b.may_contain(keys).all()
    others = rng.integers(0, 2**64 - 1, 20000, dtype=np.uint64)
    others = others[~np.isin(others, keys)]
    assert b.may_contain(others).mean() < 0.03


def test_memtable_keeps_latest_version_and_finds_every_key() -> None:
    rng = np.random.default_rng(5)
    mem = Memtable(LAYOUT, capacity=4)  # forces row and hash growth
    model: dict[int, tuple[int, int, int]] = {}
    for seq in range(1, 30):
        keys = np.unique(rng.integers(0, 300, 40)).astype(np.uint64)
        ev = rng.integers(0, 10, len(keys))
        recs = _records(keys, ev)
        recs[:, 2] = seq
        recs[:, 4] = seq
        mem.insert(keys, recs, np.arange(len(keys)), {})
        for k, e in zip(keys.tolist(), ev.tolist(), strict=True):
            if k not in model or e >= model[k][0]:
                model[k] = (e, seq, seq)
    q = np.arange(0, 320, dtype=np.uint64)
    out = np.zeros((len(q), LAYOUT.rowwords), dtype=np.int64)
    loc = np.full(len(q), -1, dtype=np.int64)
    todo = np.arange(len(q), dtype=np.int64)
    rem, _ = mem.lookup(q, todo, len(q), out, loc, 0)
    assert rem == len(q) - len(model)
    for i, k in enumerate(q.tolist()):
        assert (loc[i] >= 0) == (k in model)
        if k in model:
            assert (out[i, 0], out[i, 2]) == (model[k][0], model[k][1])
    keys, recs, _ = mem.sorted_run()
    assert keys.tolist() == sorted(model)


def test_merge_keeps_the_latest_version_of_each_key() -> None:
    rng = np.random.default_rng(6)
    runs, model = [], {}
    for r in range(4):  # newest first
        keys = np.unique(rng.integers(0, 200, 80)).astype(np.uint64)
        recs = _records(keys, rng.integers(0, 4, len(keys)))
        recs[:, 2] = 10 - r  # newer runs have higher seqs
        recs[:, 4] = r
        runs.append(Run(keys, recs, LAYOUT, lambda f: pa.nulls(0)))
        for k, row in zip(keys.tolist(), recs.tolist(), strict=True):
            v = (row[0], row[1], row[2])
            if k not in model or v > model[k][0]:
                model[k] = (v, r)
    keys, recs, _ = merge_runs(runs, LAYOUT)
    assert keys.tolist() == sorted(model)
    assert [int(x) for x in recs[:, 4]] == [model[k][1] for k in sorted(model)]
