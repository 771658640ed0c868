"""Numba kernels of aggregation views: the entity table, the per-entity event chains and the
window accumulation shared by the online read and the export.

Event chains: event i of entity e links to the next older event of e (`nxt[i]`, -1 at the end);
`head[e]` is e's newest event. Chains are kept sorted newest first by the version order
(event_ts, created_ts, seq, row), so a late event is inserted where it belongs and a read stops
at the first event older than its longest window.

Accumulation (`_add`, `_snap`): events are visited newest first; window k of a row is the prefix
of that walk whose event_ts > start[k] (windows ordered shortest first, so starts descending).
Online and export visit the same events in the same order, so they add in the same order.
Stats per (row, window): count, non-null count, sum, mean, m2 (Welford), index of the min, the
max and the last (newest) non-null value (-1: none). Online, `read_rows` does the whole read in
one call; the export runs `sorted_stats` then `finish_stats`, with the same arithmetic.

Pure functions over caller-owned arrays; the caller serializes writers and readers of one
state (store/aggregations/events.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
N_INT_STATS = 5  # count, non-null count, min index, max index, last index
N_FLOAT_STATS = 3  # sum, mean, m2


@njit(cache=True, nogil=True)
def _slot(hkeys: np.ndarray, hvals: np.ndarray, key: np.uint64) -> int:
    mask = len(hkeys) - 1
    i = int((key * _GOLDEN) >> np.uint64(40)) & mask
    while hvals[i] != -1 and hkeys[i] != key:
        i = (i + 1) & mask
    return i


@njit(cache=True, nogil=True)
def find_entities(hkeys: np.ndarray, hvals: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Entity index of each key, -1 where unknown."""
    out = np.empty(len(keys), np.int64)
    for r in range(len(keys)):
        out[r] = hvals[_slot(hkeys, hvals, keys[r])]
    return out


@njit(cache=True, nogil=True)
def add_entities(
    hkeys: np.ndarray, hvals: np.ndarray, ekey: np.ndarray, nent: int, keys: np.ndarray
) -> tuple[np.ndarray, int]:
    """Entity index of each key, adding unknown keys as nent, nent+1, ... (`ekey` records
    them). The caller keeps the table at most half full and `ekey` large enough."""
    out = np.empty(len(keys), np.int64)
    for r in range(len(keys)):
        s = _slot(hkeys, hvals, keys[r])
        if hvals[s] == -1:
            hkeys[s] = keys[r]
            hvals[s] = nent
            ekey[nent] = keys[r]
            nent += 1
        out[r] = hvals[s]
    return out, nent


@njit(cache=True, nogil=True)
def rehash(ekey: np.ndarray, nent: int, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """A new table of `cap` slots (a power of two) holding entities 0..nent-1."""
    hkeys = np.zeros(cap, np.uint64)
    hvals = np.full(cap, -1, np.int64)
    for e in range(nent):
        s = _slot(hkeys, hvals, ekey[e])
        hkeys[s] = ekey[e]
        hvals[s] = e
    return hkeys, hvals


@njit(cache=True, nogil=True)
def _newer(ts, cr, sq, rw, a, b) -> bool:  # type: ignore[no-untyped-def]
    if ts[a] != ts[b]:
        return ts[a] > ts[b]
    if cr[a] != cr[b]:
        return cr[a] > cr[b]
    if sq[a] != sq[b]:
        return sq[a] > sq[b]
    return rw[a] > rw[b]


@njit(cache=True, nogil=True)
def link(
    head: np.ndarray,
    nxt: np.ndarray,
    ent: np.ndarray,
    ts: np.ndarray,
    cr: np.ndarray,
    sq: np.ndarray,
    rw: np.ndarray,
    start: int,
    stop: int,
) -> None:
    """Insert events start..stop-1 into their entity's chain, newest first by version order."""
    for i in range(start, stop):
        e = ent[i]
        h = head[e]
        if h < 0 or _newer(ts, cr, sq, rw, i, h):
            nxt[i] = h
            head[e] = i
            continue
        p = h
        q = nxt[p]
        while q >= 0 and not _newer(ts, cr, sq, rw, i, q):
            p = q
            q = nxt[p]
        nxt[i] = q
        nxt[p] = i


@njit(cache=True, nogil=True)
def compact_order(head: np.ndarray, nxt: np.ndarray, ts: np.ndarray, nent: int, cutoff: int):  # type: ignore[no-untyped-def]
    """The events to keep (event_ts > cutoff), entity by entity, oldest first: (old index per
    new position, new head per entity). Chains of the kept events are then pos -> pos - 1."""
    n = 0
    for e in range(nent):
        j = head[e]
        while j >= 0 and ts[j] > cutoff:
            n += 1
            j = nxt[j]
    order = np.empty(n, np.int64)
    new_head = np.full(nent, -1, np.int64)
    pos = 0
    for e in range(nent):
        k = 0
        j = head[e]
        while j >= 0 and ts[j] > cutoff:
            k += 1
            j = nxt[j]
        if k == 0:
            continue
        j = head[e]
        for t in range(k):
            order[pos + k - 1 - t] = j
            j = nxt[j]
        new_head[e] = pos + k - 1
        pos += k
    return order, new_head


@njit(cache=True, nogil=True)
def _add(j, vals, valid, ai, af) -> None:  # type: ignore[no-untyped-def]
    ai[0] += 1
    if not valid[j]:
        return
    ai[1] += 1
    x = float(vals[j])
    af[0] += x
    d = x - af[1]
    af[1] += d / ai[1]
    af[2] += d * (x - af[1])
    if ai[2] < 0 or vals[j] < vals[ai[2]]:
        ai[2] = j
    if ai[3] < 0 or vals[j] > vals[ai[3]]:
        ai[3] = j
    if ai[4] < 0:
        ai[4] = j


@njit(cache=True, nogil=True)
def _snap(r, k, ai, af, out_i, out_f) -> None:  # type: ignore[no-untyped-def]
    for s in range(N_INT_STATS):
        out_i[r, k, s] = ai[s]
    for s in range(N_FLOAT_STATS):
        out_f[r, k, s] = af[s]


@njit(cache=True, nogil=True)
def _reset(ai, af) -> None:  # type: ignore[no-untyped-def]
    ai[0] = 0
    ai[1] = 0
    ai[2] = -1
    ai[3] = -1
    ai[4] = -1
    af[:] = 0.0


@njit(cache=True, nogil=True)
def chain_window(
    head: np.ndarray, nxt: np.ndarray, ts: np.ndarray, ent: int, end: int, start: int
) -> np.ndarray:
    """Indices of entity `ent`'s events with start < event_ts <= end, newest first."""
    n = 0
    j = head[ent] if ent >= 0 else -1
    while j >= 0 and ts[j] > end:
        j = nxt[j]
    first = j
    while j >= 0 and ts[j] > start:
        n += 1
        j = nxt[j]
    out = np.empty(n, np.int64)
    j = first
    for t in range(n):
        out[t] = j
        j = nxt[j]
    return out


@njit(cache=True, nogil=True)
def sorted_stats(
    group_start: np.ndarray,
    group_end: np.ndarray,
    ts: np.ndarray,
    vals: np.ndarray,
    valid: np.ndarray,
    end: np.ndarray,
    starts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Export: events sorted ascending by (entity, version order); row r's entity owns events
    group_start[r]..group_end[r]-1 (an empty range for an entity without events). Same stats
    as read_rows, visiting the same events newest first."""
    n, nk = starts.shape
    out_i = np.empty((n, nk, N_INT_STATS), np.int64)
    out_f = np.empty((n, nk, N_FLOAT_STATS), np.float64)
    ai = np.empty(N_INT_STATS, np.int64)
    af = np.empty(N_FLOAT_STATS, np.float64)
    for r in range(n):
        _reset(ai, af)
        lo = group_start[r]
        hi = group_end[r]
        # first event with ts > end[r] within [lo, hi): binary search (ts ascending in a group)
        a, b = lo, hi
        while a < b:
            m = (a + b) >> 1
            if ts[m] <= end[r]:
                a = m + 1
            else:
                b = m
        j = a - 1
        k = 0
        while j >= lo and k < nk:
            while k < nk and ts[j] <= starts[r, k]:
                _snap(r, k, ai, af, out_i, out_f)
                k += 1
            if k == nk:
                break
            _add(j, vals, valid, ai, af)
            j -= 1
        while k < nk:
            _snap(r, k, ai, af, out_i, out_f)
            k += 1
    return out_i, out_f


# function codes of finish_stats
F_COUNT, F_SUM, F_MEAN, F_STDDEV, F_MIN, F_MAX, F_LAST = 0, 1, 2, 3, 4, 5, 6


@njit(cache=True, nogil=True)
def _finish_one(c, ai, af, r, j, fo, io, ok) -> None:  # type: ignore[no-untyped-def]
    nn = ai[1]
    if c == F_COUNT:
        io[r, j] = ai[0]
        ok[r, j] = True
    elif c == F_SUM:
        if nn > 0:
            fo[r, j] = af[0]
            ok[r, j] = True
    elif c == F_MEAN:
        if nn > 0:
            fo[r, j] = af[0] / nn
            ok[r, j] = True
    elif c == F_STDDEV:
        if nn > 1:
            fo[r, j] = np.sqrt(max(af[2] / (nn - 1), 0.0))
            ok[r, j] = True
    else:
        idx = ai[2 + (c - F_MIN)]
        io[r, j] = idx
        ok[r, j] = idx >= 0


@njit(cache=True, nogil=True)
def finish_stats(
    stats_i: np.ndarray, stats_f: np.ndarray, codes: np.ndarray, ks: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Output j = function codes[j] over window ks[j], per row: (float values, int values,
    valid). count -> ints; sum, mean, stddev -> floats; min, max, last -> ints hold the event
    index (-1 and invalid where the window has no non-null value)."""
    n = stats_i.shape[0]
    m = len(codes)
    fo = np.zeros((n, m), np.float64)
    io = np.zeros((n, m), np.int64)
    ok = np.zeros((n, m), np.bool_)
    for r in range(n):
        for j in range(m):
            _finish_one(codes[j], stats_i[r, ks[j]], stats_f[r, ks[j]], r, j, fo, io, ok)
    return fo, io, ok


@njit(cache=True, nogil=True)
def _add_col(j, c, fv, ov, okm, ai, af) -> None:  # type: ignore[no-untyped-def]
    """_add over column c of the state's matrices: fv (float values) for sums, ov (order keys:
    ints, or floats' bits mapped to keep their order) for min and max."""
    ai[0] += 1
    if not okm[j, c]:
        return
    ai[1] += 1
    x = fv[j, c]
    af[0] += x
    d = x - af[1]
    af[1] += d / ai[1]
    af[2] += d * (x - af[1])
    if ai[2] < 0 or ov[j, c] < ov[ai[2], c]:
        ai[2] = j
    if ai[3] < 0 or ov[j, c] > ov[ai[3], c]:
        ai[3] = j
    if ai[4] < 0:
        ai[4] = j


@njit(cache=True)  # holds the GIL: a microsecond call gains nothing from releasing it
def read_rows(
    hkeys: np.ndarray,
    hvals: np.ndarray,
    head: np.ndarray,
    nxt: np.ndarray,
    ts: np.ndarray,
    fv: np.ndarray,
    ov: np.ndarray,
    okm: np.ndarray,
    ekeys: np.ndarray,
    known: np.ndarray,
    end: np.ndarray,
    hop: int,
    groups: np.ndarray,
    outs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The whole online read in one call. groups: (G, 1 + Kmax) [column, window lengths
    ascending, padded with 0]; outs: (M, 3) [function code, group, window k]. Per row r
    (entity of ekeys[r]; none where not known[r]) and output j: (float values, int values,
    valid) as finish_stats. Accumulates exactly as sorted_stats (same events, same order)."""
    n = len(ekeys)
    m = outs.shape[0]
    fo = np.zeros((n, m), np.float64)
    io = np.zeros((n, m), np.int64)
    ok = np.zeros((n, m), np.bool_)
    kmax = groups.shape[1] - 1
    ai = np.empty(N_INT_STATS, np.int64)
    af = np.empty(N_FLOAT_STATS, np.float64)
    starts = np.empty(kmax, np.int64)
    for r in range(n):
        e = hvals[_slot(hkeys, hvals, ekeys[r])] if known[r] else -1
        for g in range(groups.shape[0]):
            c = groups[g, 0]
            nk = 0
            while nk < kmax and groups[g, 1 + nk] > 0:
                s = end[r] - groups[g, 1 + nk]
                if hop > 0:
                    s = (s // hop) * hop
                starts[nk] = s
                nk += 1
            _reset(ai, af)
            k = 0
            j = head[e] if e >= 0 else -1
            while j >= 0 and ts[j] > end[r]:
                j = nxt[j]
            while k < nk:
                while k < nk and (j < 0 or ts[j] <= starts[k]):
                    for o in range(m):
                        if outs[o, 1] == g and outs[o, 2] == k:
                            _finish_one(outs[o, 0], ai, af, r, o, fo, io, ok)
                    k += 1
                if k == nk:
                    break
                _add_col(j, c, fv, ov, okm, ai, af)
                j = nxt[j]
    return fo, io, ok


def order_keys(values: np.ndarray) -> np.ndarray:
    """int64 keys ordered as `values`: ints as they are, floats by their bits with the
    magnitude bits of negatives flipped (IEEE 754 order; -0.0 sorts before 0.0)."""
    if values.dtype != np.float64:
        return values.astype(np.int64)
    b = values.view(np.int64)
    return b ^ ((b >> 63) & np.int64(0x7FFFFFFFFFFFFFFF))
