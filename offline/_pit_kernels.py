"""Numba kernels of the int64-key point-in-time match (see offline/pit_match.py).

Entities are sorted by (key, ts) into runs of one key. A feature row is recorded at the first
entity of its key's run whose ts >= its event_ts (every later entity of the run can see it),
keeping the newest version there; a prefix-max sweep along each run then gives, per entity,
the newest version with event_ts <= entity ts.
Memory layout is chosen for cache misses, the cost of this loop (5M feature rows against 1M
entities): per entity one row `state[p] = (ts, best ets, best created, best seq, best row,
best position)`
and per key one row `runs[j] = (start, end)`, so a feature row costs ~3 misses (key index,
run, state) instead of ~7 with one array per field. Pure functions over caller-owned arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TS, B_ETS, B_CTS, B_SEQ, B_ROW, B_POS = 0, 1, 2, 3, 4, 5  # columns of `state`
STATE_COLUMNS = 6
_FIB = np.uint64(11400714819323198485)  # 2^64 / golden ratio: multiplicative hashing


@njit(cache=True, nogil=True)
def build_hash(uniq: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Open-addressing table of 2^bits slots: key -> index into `uniq` (-1: empty slot)."""
    size = 1 << bits
    slot_key = np.zeros(size, np.int64)
    slot_val = np.full(size, -1, np.int64)
    mask = np.int64(size - 1)
    for j in range(uniq.shape[0]):
        h = np.int64((np.uint64(uniq[j]) * _FIB) >> np.uint64(64 - bits))
        while slot_val[h] >= 0:
            h = (h + 1) & mask
        slot_key[h] = uniq[j]
        slot_val[h] = j
    return slot_key, slot_val


@njit(cache=True, nogil=True, inline="always")
def _lookup(k, base, direct, bitmap, slot_key, slot_val, bits):  # noqa: ANN001
    d = k - base
    if bitmap.shape[0] > 0:  # one bit per key of the range: most feature keys miss here
        if d < 0 or d >= bitmap.shape[0] * 8:
            return -1
        if (bitmap[d >> 3] >> (d & 7)) & 1 == 0:
            return -1
    if direct.shape[0] > 0:
        if d < 0 or d >= direct.shape[0]:
            return -1
        return direct[d]
    mask = np.int64(slot_val.shape[0] - 1)
    h = np.int64((np.uint64(k) * _FIB) >> np.uint64(64 - bits))
    while slot_val[h] >= 0:
        if slot_key[h] == k:
            return slot_val[h]
        h = (h + 1) & mask
    return -1


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
    base: int,  # direct addressing: run of key k is runs[direct[k - base]] (-1: no entity)
    direct: np.ndarray,  # int32; empty: use the hash table instead
    bitmap: np.ndarray,  # uint8, bit k - base set for entity keys; empty: none (filter only)
    slot_key: np.ndarray,  # hash table from build_hash
    slot_val: np.ndarray,
    bits: int,
    runs: np.ndarray,  # int64 (n_uniq, 2): [start, end) of each key's entities in sort order
    state: np.ndarray,  # int64 (n_entities, STATE_COLUMNS), see TS..B_POS; in/out
    keys: np.ndarray,  # int64 feature keys
    ets: np.ndarray,  # int64 feature event ts
    cts: np.ndarray,  # int64 feature created ts
    seq: np.ndarray,  # int64
    row: np.ndarray,  # int32
    max_seq: int,  # rows with seq > max_seq are ignored (as_of_seq)
    lo_ts: int,  # rows with event ts < lo_ts are ignored
    pos_base: int,  # position of row i is pos_base + i (where the caller reads it from)
) -> None:
    # Two passes: key -> run for every row, then the match. With the lookup and the version
    # comparison inside one loop (or behind calls), numba's code measured several times
    # slower; the comparison is spelled out as early exits (most rows leave after one).
    n = keys.shape[0]
    found = np.empty(n, np.int64)
    if direct.shape[0] > 0 and bitmap.shape[0] == 0:
        span = direct.shape[0]
        for i in range(n):
            d = keys[i] - base
            found[i] = direct[d] if 0 <= d < span else -1
    else:
        for i in range(n):
            found[i] = _lookup(keys[i], base, direct, bitmap, slot_key, slot_val, bits)
    for i in range(n):
        j = found[i]
        if j < 0:
            continue
        s = seq[i]
        e = ets[i]
        if s > max_seq or e < lo_ts:
            continue
        a = runs[j, 0]
        end = runs[j, 1]
        b = end
        while a < b:
            mid = (a + b) >> 1
            if state[mid, TS] < e:
                a = mid + 1
            else:
                b = mid
        if a == end:
            continue
        c = cts[i]
        r = np.int64(row[i])
        best_seq = state[a, B_SEQ]
        if best_seq >= 0:
            best_e = state[a, B_ETS]
            if e < best_e:
                continue
            if e == best_e:
                best_c = state[a, B_CTS]
                if c < best_c:
                    continue
                if c == best_c and (s < best_seq or (s == best_seq and r <= state[a, B_ROW])):
                    continue
        state[a, B_ETS] = e
        state[a, B_CTS] = c
        state[a, B_SEQ] = s
        state[a, B_ROW] = r
        state[a, B_POS] = pos_base + i


@njit(cache=True, nogil=True)
def dense_order(keys: np.ndarray, ts: np.ndarray, lo: int, span: int) -> np.ndarray:
    """The permutation sorting entity rows by (key, ts), for keys in `[lo, lo + span)`: a
    counting sort by key (O(rows + span), one int32 per key of the span), then each key's run
    sorted by ts (insertion sort for short runs, a merge sort for long ones). Equal (key, ts)
    rows may come in any order."""
    n = keys.shape[0]
    edge = np.zeros(span + 2, np.int32)  # edge[d + 1]: end of key d's run, then its start
    for i in range(n):
        edge[keys[i] - lo + 1] += 1
    for d in range(span):
        edge[d + 1] += edge[d]
    order = np.empty(n, np.int64)
    for i in range(n - 1, -1, -1):
        d = keys[i] - lo + 1
        edge[d] -= 1
        order[edge[d]] = i
    edge[span + 1] = n
    for d in range(1, span + 1):
        a, b = edge[d], edge[d + 1]
        if b - a <= 1:
            continue
        if b - a > 32:
            seg = order[a:b].copy()
            order[a:b] = seg[np.argsort(ts[seg], kind="mergesort")]
            continue
        for p in range(a + 1, b):
            x = order[p]
            t = ts[x]
            q = p - 1
            while q >= a and ts[order[q]] > t:
                order[q + 1] = order[q]
                q -= 1
            order[q + 1] = x
    return order


@njit(cache=True, nogil=True)
def sweep(
    runs: np.ndarray,
    state: np.ndarray,
    ttl_ns: int,  # 0: no lower bound
    out_seq: np.ndarray,  # int64 per sorted entity: matched _seq, or -1
    out_row: np.ndarray,  # int32 per sorted entity: matched _row, or -1
    out_pos: np.ndarray,  # int64 per sorted entity: matched position, or -1
) -> None:
    for j in range(runs.shape[0]):
        have = False
        ce, cc, cs, cr, cp = 0, 0, 0, 0, 0
        for p in range(runs[j, 0], runs[j, 1]):
            if state[p, B_SEQ] >= 0 and (
                not have
                or _newer(
                    state[p, B_ETS],
                    state[p, B_CTS],
                    state[p, B_SEQ],
                    state[p, B_ROW],
                    ce,
                    cc,
                    cs,
                    cr,
                )
            ):
                ce, cc = state[p, B_ETS], state[p, B_CTS]
                cs, cr, cp = state[p, B_SEQ], state[p, B_ROW], state[p, B_POS]
                have = True
            if have and (ttl_ns == 0 or ce >= state[p, TS] - ttl_ns):
                out_seq[p] = cs
                out_row[p] = cr
                out_pos[p] = cp
            else:
                out_seq[p] = -1
                out_row[p] = -1
                out_pos[p] = -1
