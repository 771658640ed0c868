"""The aggregation kernels against numpy oracles: entity table, chain linking (late events),
order keys, and the export's linear-time ordering."""

from __future__ import annotations

import numpy as np

from store.aggregations import _kernels as K
from store.aggregations import _sort_kernels as S


def test_entity_table_finds_what_it_added_and_nothing_else() -> None:
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**63, 500, dtype=np.int64).astype(np.uint64)
    hk, hv = np.zeros(2048, np.uint64), np.full(2048, -1, np.int64)
    ekey = np.zeros(1024, np.uint64)
    ids, n = K.add_entities(hk, hv, ekey, 0, np.concatenate([keys, keys[:50]]))
    assert n == 500 and (ids[:500] == np.arange(500)).all() and (ids[500:] == np.arange(50)).all()
    assert (K.find_entities(hk, hv, keys) == np.arange(500)).all()
    assert (K.find_entities(hk, hv, keys + np.uint64(1)) == -1).sum() >= 499  # (a rare hit)
    hk2, hv2 = K.rehash(ekey, n, 4096)
    assert (K.find_entities(hk2, hv2, keys) == np.arange(500)).all()


def test_link_keeps_each_chain_newest_first_by_version_order() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    ent = rng.integers(0, 20, n)
    ts = rng.integers(0, 50, n)  # many ties
    cr = rng.integers(0, 3, n)
    sq = np.arange(n) // 100
    rw = np.arange(n) % 100
    head, nxt = np.full(20, -1, np.int64), np.full(n, -1, np.int64)
    for lo in range(0, n, 100):  # batches, arriving in any time order
        K.link(head, nxt, ent, ts, cr, sq, rw, lo, lo + 100)
    for e in range(20):
        chain, j = [], head[e]
        while j >= 0:
            chain.append(j)
            j = nxt[j]
        mine = np.flatnonzero(ent == e)
        want = mine[np.lexsort((rw[mine], sq[mine], cr[mine], ts[mine]))][::-1]
        assert chain == want.tolist()


def test_order_keys_order_floats_and_ints_like_their_values() -> None:
    x = np.array([3.5, -0.5, -1e300, 0.0, 1e-300, -np.inf, np.inf, 2.0, -3.5])
    assert (np.argsort(K.order_keys(x), kind="stable") == np.argsort(x, kind="stable")).all()
    i = np.array([5, -(2**62), 2**62, 0, -1], dtype=np.int64)
    assert (K.order_keys(i) == i).all()


def test_export_ordering_equals_a_lexsort() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    keys = rng.choice(rng.integers(-(2**40), 2**40, 300), n)
    ts = rng.integers(0, 100, n)
    cr = rng.integers(0, 3, n)
    sq = rng.integers(0, 5, n)
    rw = np.arange(n)
    ids, m = S.dense_ids(keys)
    assert m == len(np.unique(keys))
    assert all(len(set(ids[keys == k])) == 1 for k in np.unique(keys)[:20])
    order, starts = S.counting_order(ids, m)
    S.sort_runs(order, starts, ts, cr, sq, rw)
    want = np.lexsort((rw, sq, cr, ts, ids))
    assert (order == want).all()
    assert (np.diff(starts) == np.bincount(ids, minlength=m)).all()
