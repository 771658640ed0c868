"""numba kernels of the Greedy-PLR fit (Bourbon's shrinking cone) and of the model's prediction;
the optimal fit is in _pla.py, which shares the segment format written here. Pure functions over
numpy arrays, `@njit(cache=True, nogil=True)`, wrapped by plr.py. Stateless; safe to call from any
thread.

Segment format (read by `_kernels.table_lookup`): segs[s] = (first key, float32 bits of the slope |
start position << 32), (n, 2) uint64; segf is segs viewed as float32 (the slope is segf[s, 2]).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_S32 = np.uint64(32)


@njit(cache=True, nogil=True)
def plr_greedy_segment(keys, i, delta, line):
    """Greedy PLR (shrinking cone) from keys[i]: the slope is kept inside the cone of slopes that
    predict every later key of the segment within delta of (position - i); a key that empties the
    cone (or narrows it below float32 resolution: slopes are stored as float32) ends the segment.
    Writes the slope to line[0]; returns the end of the segment."""
    n = keys.shape[0]
    x0 = keys[i]
    lo = 0.0
    hi = np.inf
    j = i + 1
    while j < n:
        dx = np.float64(keys[j] - x0)
        dy = np.float64(j - i)
        nlo = max(lo, (dy - delta) / dx)
        nhi = min(hi, (dy + delta) / dx)
        if nlo > nhi:
            break
        mid = np.float64(np.float32((nlo + nhi) * 0.5))
        if mid < nlo or mid > nhi:
            break
        lo = nlo
        hi = nhi
        j += 1
    line[0] = np.float32((lo + hi) * 0.5) if hi < np.inf else np.float32(0.0)
    return j


@njit(cache=True, nogil=True)
def plr_set_segment(segs, segf, s, key, slope32, start):
    """Segment s in the format table_lookup reads: segs[s] = (first key, float32 bits of the
    slope | start position << 32); segf is segs viewed as float32 (the slope is segf[s, 2])."""
    segs[s, 0] = key
    segs[s, 1] = np.uint64(start) << _S32
    segf[s, 2] = slope32


@njit(cache=True, nogil=True)
def plr_fit(keys, delta, segs, segf):
    """Greedy PLR: segments of plr_greedy_segment, each starting at a key, written with
    plr_set_segment into segs ((n, 2) uint64) and its float32 view segf; returns the number of
    segments. keys: sorted, unique, fewer than 2^32. The caller passes delta slightly below the
    bound it promises, to absorb float rounding."""
    n = keys.shape[0]
    line = np.empty(1, np.float64)
    ns = 0
    i = 0
    while i < n:
        j = plr_greedy_segment(keys, i, delta, line)
        plr_set_segment(segs, segf, ns, keys[i], np.float32(line[0]), i)
        ns += 1
        i = j
    return ns


@njit(cache=True, nogil=True)
def plr_predict(segs, segf, q, out):
    """out[i] = predicted position of q[i] (the arithmetic of table_lookup); q[i] >= segs[0, 0]."""
    ns = segs.shape[0]
    for i in range(q.shape[0]):
        lo = 0
        hi = ns
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if segs[mid, 0] <= q[i]:
                lo = mid
            else:
                hi = mid
        dx = np.float64(q[i] - segs[lo, 0])
        out[i] = np.float64(segs[lo, 1] >> _S32) + np.float64(segf[lo, 2]) * dx
