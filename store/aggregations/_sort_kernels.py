"""Numba kernels that put an export's events and entity rows in (entity, version) order in
linear time: dense entity ids by hashing, a counting sort by id, then a sort of each entity's
(short) run by event time, ties by (created, seq, row).

Pure functions over caller-owned arrays; safe from any thread.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from store.aggregations._kernels import _newer

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True)
def dense_ids(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Ids 0..m-1 of the distinct int64 `keys`, in first-appearance order: (ids, m)."""
    n = len(keys)
    cap = 16
    while cap < 2 * n:
        cap *= 2
    mask = cap - 1
    tk = np.zeros(cap, np.int64)
    tv = np.full(cap, -1, np.int64)
    ids = np.empty(n, np.int64)
    m = 0
    for r in range(n):
        k = keys[r]
        i = int((np.uint64(k) * _GOLDEN) >> np.uint64(40)) & mask
        while tv[i] != -1 and tk[i] != k:
            i = (i + 1) & mask
        if tv[i] == -1:
            tk[i] = k
            tv[i] = m
            m += 1
        ids[r] = tv[i]
    return ids, m


@njit(cache=True, nogil=True)
def counting_order(ids: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """A stable order of rows by id, and the start of each id's run (m + 1 offsets)."""
    starts = np.zeros(m + 1, np.int64)
    for r in range(len(ids)):
        starts[ids[r] + 1] += 1
    for i in range(m):
        starts[i + 1] += starts[i]
    fill = starts[:m].copy()
    order = np.empty(len(ids), np.int64)
    for r in range(len(ids)):
        order[fill[ids[r]]] = r
        fill[ids[r]] += 1
    return order, starts


@njit(cache=True, nogil=True)
def sort_runs(order: np.ndarray, starts: np.ndarray, ts, cr, sq, rw) -> None:  # type: ignore[no-untyped-def]
    """Sort each run starts[i]..starts[i+1]-1 of `order` by version order (ts, cr, sq, rw)
    in place: a merge sort by ts, then an insertion sort of each tie of ts."""
    for g in range(len(starts) - 1):
        a, b = starts[g], starts[g + 1]
        if b - a < 2:
            continue
        sub = order[a:b].copy()
        p = np.argsort(ts[sub], kind="mergesort")
        for t in range(b - a):
            order[a + t] = sub[p[t]]
        i = a
        while i < b:
            j = i + 1
            while j < b and ts[order[j]] == ts[order[i]]:
                j += 1
            for x in range(i + 1, j):
                v = order[x]
                y = x - 1
                while y >= i and _newer(ts, cr, sq, rw, order[y], v):
                    order[y + 1] = order[y]
                    y -= 1
                order[y + 1] = v
            i = j
