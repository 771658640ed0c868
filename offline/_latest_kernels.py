"""Numba kernel of the latest row per int64 key (see offline/latest.py).

`latest_rows` walks the rows in key order and keeps, per key, the row with the largest version
(event_ts, created_ts, seq, row); its output is therefore sorted by key. Pure function over
caller-owned arrays; thread-safe (nogil).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _latest_rows(
    order: np.ndarray,  # int64: row positions sorted by key
    keys: np.ndarray,  # int64 per row
    ets: np.ndarray,  # int64 per row (null: the minimum int64)
    cts: np.ndarray,  # int64 per row (null: the minimum int64)
    seq: np.ndarray,  # int64 per row
    row: np.ndarray,  # int64 per row
    out: np.ndarray,  # int64, len(order): the winning row per key, in key order
) -> int:
    m = 0
    n = len(order)
    i = 0
    while i < n:
        best = order[i]
        k = keys[best]
        j = i + 1
        while j < n and keys[order[j]] == k:
            p = order[j]
            if (ets[p], cts[p], seq[p], row[p]) > (ets[best], cts[best], seq[best], row[best]):
                best = p
            j += 1
        out[m] = best
        m += 1
        i = j
    return m


def latest_rows(
    keys: np.ndarray, ets: np.ndarray, cts: np.ndarray, seq: np.ndarray, row: np.ndarray
) -> np.ndarray:
    """Positions of the latest row of each distinct key, sorted by key.

    All arguments: int64 arrays of one length (timestamps as ns, nulls as the minimum int64,
    which loses to any real time, as DuckDB's `DESC NULLS LAST` order does)."""
    k, e, c, s, r = (np.ascontiguousarray(a, dtype=np.int64) for a in (keys, ets, cts, seq, row))
    if not len(k) == len(e) == len(c) == len(s) == len(r):
        raise ValueError("latest_rows: arrays of different lengths")
    order = np.argsort(k, kind="stable")
    out = np.empty(len(order), dtype=np.int64)
    m = _latest_rows(order, k, e, c, s, r, out)
    return out[:m]
