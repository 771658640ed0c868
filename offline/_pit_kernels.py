"""Numba kernels of the int64-key point-in-time match (see offline/pit_match.py).

Entities are sorted by (key, ts) into runs of one key. A feature row is recorded at the first
entity of its key's run whose ts >= its event_ts (every later entity of the run can see it),
keeping the newest version there; a prefix-max sweep along each run then gives, per entity,
the newest version with event_ts <= entity ts. Pure functions over caller-owned arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _newer(e1, c1, s1, r1, e2, c2, s2, r2) -> bool:  # noqa: ANN001
    if e1 != e2:
        return e1 > e2
    if c1 != c2:
        return c1 > c2
    if s1 != s2:
        return s1 > s2
    return r1 > r2


@njit(cache=True, nogil=True)
def record_rows(
    uniq: np.ndarray,  # int64, sorted unique entity keys
    run_start: np.ndarray,  # int64 (len(uniq) + 1,), run of uniq[j] is [run_start[j], run_start[j+1])
    ent_ts: np.ndarray,  # int64, entity ts in (key, ts) order
    keys: np.ndarray,  # int64 feature keys
    ets: np.ndarray,  # int64 feature event ts
    cts: np.ndarray,  # int64 feature created ts
    seq: np.ndarray,  # int64
    row: np.ndarray,  # int32
    max_seq: int,  # rows with seq > max_seq are ignored (as_of_seq)
    lo_ts: int,  # rows with event ts < lo_ts are ignored
    best_ets: np.ndarray,  # int64 per sorted entity, in/out
    best_cts: np.ndarray,
    best_seq: np.ndarray,  # -1 where nothing recorded yet
    best_row: np.ndarray,  # int32
) -> None:
    n_uniq = uniq.shape[0]
    for i in range(keys.shape[0]):
        s = seq[i]
        e = ets[i]
        if s > max_seq or e < lo_ts:
            continue
        k = keys[i]
        lo, hi = 0, n_uniq
        while lo < hi:
            mid = (lo + hi) >> 1
            if uniq[mid] < k:
                lo = mid + 1
            else:
                hi = mid
        if lo == n_uniq or uniq[lo] != k:
            continue
        a = run_start[lo]
        b = run_start[lo + 1]
        while a < b:
            mid = (a + b) >> 1
            if ent_ts[mid] < e:
                a = mid + 1
            else:
                b = mid
        if a == run_start[lo + 1]:
            continue
        c = cts[i]
        r = row[i]
        if best_seq[a] < 0 or _newer(
            e, c, s, r, best_ets[a], best_cts[a], best_seq[a], best_row[a]
        ):
            best_ets[a] = e
            best_cts[a] = c
            best_seq[a] = s
            best_row[a] = r


@njit(cache=True, nogil=True)
def sweep(
    run_start: np.ndarray,
    ent_ts: np.ndarray,
    best_ets: np.ndarray,
    best_cts: np.ndarray,
    best_seq: np.ndarray,
    best_row: np.ndarray,
    ttl_ns: int,  # 0: no lower bound
    out_seq: np.ndarray,  # int64 per sorted entity: matched _seq, or -1
    out_row: np.ndarray,  # int32 per sorted entity: matched _row, or -1
) -> None:
    for j in range(run_start.shape[0] - 1):
        have = False
        ce, cc, cs, cr = 0, 0, 0, 0
        for p in range(run_start[j], run_start[j + 1]):
            if best_seq[p] >= 0 and (
                not have
                or _newer(best_ets[p], best_cts[p], best_seq[p], best_row[p], ce, cc, cs, cr)
            ):
                ce, cc, cs, cr = best_ets[p], best_cts[p], best_seq[p], best_row[p]
                have = True
            if have and (ttl_ns == 0 or ce >= ent_ts[p] - ttl_ns):
                out_seq[p] = cs
                out_row[p] = cr
            else:
                out_seq[p] = -1
                out_row[p] = -1
