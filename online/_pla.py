"""numba kernel of the optimal piecewise linear fit (the convex-hull PLA of O'Rourke 1981, as in
the PGM-index): each segment is the longest run of keys from its start that *some* line predicts
within eps, not only the lines through the first key that Greedy-PLR tries. Used by plr.py.

The segment format is the one `_kernels.table_lookup` reads: (first key, float32 slope, uint32
integer position at the first key). The fit runs with eps = delta - 0.5 - margin, so that
rounding the line's fractional value at the first key to an integer keeps every key within
delta; then each segment is checked with the lookup's own arithmetic, and a segment that fails
(float rounding at extreme keys, a negative start near position 0) is replaced by the Greedy-PLR
segment from the same key. So the contract |predict - position| <= delta holds by construction.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from online._plr_kernels import plr_greedy_segment, plr_set_segment

HULL_CAP = 4096  # points per hull; a segment whose hull would outgrow it ends there


@njit(cache=True, nogil=True)
def _lt(ax, ay, bx, by):
    """Slope of vector a < slope of vector b (both dx of the same sign)."""
    return ay * bx < by * ax


@njit(cache=True, nogil=True)
def _cross(ox, oy, ax, ay, bx, by):
    return (ax - ox) * (by - oy) - (ay - oy) * (bx - ox)


@njit(cache=True, nogil=True)
def _hull_segment(keys, i, eps, ux, uy, lx, ly, line):
    """The longest run keys[i:j] that one line fits within eps (local coordinates: x = keys - keys[i]
    as float64, the lookup's own conversion; y = position - i). Writes (slope, value at x = 0)
    to line; returns j."""
    n = keys.shape[0]
    x0 = keys[i]
    if i + 1 >= n:
        line[0] = 0.0
        line[1] = 0.0
        return i + 1
    # rectangle: r0, r2 bound the smallest feasible slope, r1, r3 the largest
    r0x = 0.0
    r0y = eps
    r1x = 0.0
    r1y = -eps
    x = np.float64(keys[i + 1] - x0)
    r2x = x
    r2y = 1.0 - eps
    r3x = x
    r3y = 1.0 + eps
    ux[0] = 0.0
    uy[0] = eps
    ux[1] = x
    uy[1] = 1.0 + eps
    lx[0] = 0.0
    ly[0] = -eps
    lx[1] = x
    ly[1] = 1.0 - eps
    us = 0
    un = 2
    ls = 0
    ln = 2
    last = x
    j = i + 2
    while j < n and un < HULL_CAP and ln < HULL_CAP:
        x = np.float64(keys[j] - x0)
        if x <= last:  # keys this far apart collide as float64: start a new segment
            break
        last = x
        y = np.float64(j - i)
        p1x = x
        p1y = y + eps
        p2x = x
        p2y = y - eps
        s1x = r2x - r0x
        s1y = r2y - r0y
        s2x = r3x - r1x
        s2y = r3y - r1y
        if _lt(p1x - r2x, p1y - r2y, s1x, s1y) or _lt(s2x, s2y, p2x - r3x, p2y - r3y):
            break
        # The two updates below mirror each other (upper hull / lower hull). Written out on
        # purpose: one pair of helpers with a +-1 sign made the fit 25-60% slower (numba 0.68).
        if _lt(p1x - r1x, p1y - r1y, s2x, s2y):
            mi = ls
            mnx = lx[ls] - p1x
            mny = ly[ls] - p1y
            for k in range(ls + 1, ln):
                vx = lx[k] - p1x
                vy = ly[k] - p1y
                if _lt(mnx, mny, vx, vy):
                    break
                mnx = vx
                mny = vy
                mi = k
            r1x = lx[mi]
            r1y = ly[mi]
            r3x = p1x
            r3y = p1y
            ls = mi
            end = un
            while (
                end >= us + 2
                and _cross(ux[end - 2], uy[end - 2], ux[end - 1], uy[end - 1], p1x, p1y) <= 0
            ):
                end -= 1
            ux[end] = p1x
            uy[end] = p1y
            un = end + 1
        if _lt(s1x, s1y, p2x - r0x, p2y - r0y):
            mi = us
            mxx = ux[us] - p2x
            mxy = uy[us] - p2y
            for k in range(us + 1, un):
                vx = ux[k] - p2x
                vy = uy[k] - p2y
                if _lt(vx, vy, mxx, mxy):
                    break
                mxx = vx
                mxy = vy
                mi = k
            r0x = ux[mi]
            r0y = uy[mi]
            r2x = p2x
            r2y = p2y
            us = mi
            end = ln
            while (
                end >= ls + 2
                and _cross(lx[end - 2], ly[end - 2], lx[end - 1], ly[end - 1], p2x, p2y) >= 0
            ):
                end -= 1
            lx[end] = p2x
            ly[end] = p2y
            ln = end + 1
        j += 1
    s1x = r2x - r0x
    s1y = r2y - r0y
    s2x = r3x - r1x
    s2y = r3y - r1y
    slope = (s1y / s1x + s2y / s2x) * 0.5
    a = s1x * s2y - s1y * s2x
    if a == 0.0:
        ix = r0x
        iy = r0y
    else:
        b = ((r1x - r0x) * s2y - (r1y - r0y) * s2x) / a
        ix = r0x + b * s1x
        iy = r0y + b * s1y
    line[0] = slope
    line[1] = iy - ix * np.float64(np.float32(slope))
    return j


@njit(cache=True, nogil=True)
def _fits(keys, i, j, pos, slope32, delta):
    """Every key of keys[i:j] within delta of the lookup's prediction pos + slope32 * dx."""
    x0 = keys[i]
    p = np.float64(pos)
    s = np.float64(slope32)
    for k in range(i, j):
        pred = p + s * np.float64(keys[k] - x0)
        if abs(pred - np.float64(k)) > delta:
            return False
    return True


@njit(cache=True, nogil=True)
def plr_fit_optimal(keys, delta, segs, segf):
    """Segments of sorted unique keys (fewer than 2^32) within delta; same outputs as
    _plr_kernels.plr_fit. Returns the number of segments."""
    n = keys.shape[0]
    eps = delta - 0.5 - 1e-3
    ux = np.empty(HULL_CAP, np.float64)
    uy = np.empty(HULL_CAP, np.float64)
    lx = np.empty(HULL_CAP, np.float64)
    ly = np.empty(HULL_CAP, np.float64)
    line = np.empty(2, np.float64)
    ns = 0
    i = 0
    while i < n:
        j = i + 1
        ok = False
        if eps > 0.0:
            j = _hull_segment(keys, i, eps, ux, uy, lx, ly, line)
            s32 = np.float32(line[0])
            pos = np.floor(line[1] + np.float64(i) + 0.5)
            ok = pos >= 0.0 and _fits(keys, i, j, pos, s32, delta)
        if ok:
            plr_set_segment(segs, segf, ns, keys[i], s32, np.int64(pos))
        else:
            j = plr_greedy_segment(keys, i, delta * (1.0 - 1e-6), line)
            plr_set_segment(segs, segf, ns, keys[i], np.float32(line[0]), i)
        ns += 1
        i = j
    return ns
