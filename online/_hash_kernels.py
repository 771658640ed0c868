"""numba kernels of the memtable's open-addressing hash table: insert (latest version wins),
rehash and lookup. Pure functions over numpy arrays, `@njit(cache=True, nogil=True)`, wrapped by
memtable.py, which holds its lock around them. Stateless.

Table: htab (cap, 2) uint64 of (key, slot + 1), 0 = empty; linear probing from mix64(key); cap a
power of two.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from online._kernels import LOC_SHIFT, mix64

_ONE = np.uint64(1)


@njit(cache=True, nogil=True)
def mem_insert(htab, slot_keys, recs, nrows, bkeys, brecs, rows, out_slot):
    """Insert batch rows `rows`, in order, into the hash table htab ((cap, 2) uint64: key, slot + 1;
    0 = empty; linear probing; cap a power of two). A row replaces the stored one when its
    (event_ts, created_ts) >= the stored pair (it is later in seq or in the batch, so it wins
    ties); otherwise it is dropped (out_slot = -1). Returns the new row count."""
    mask = np.uint64(htab.shape[0] - 1)
    width = recs.shape[1]
    for r in range(rows.shape[0]):
        b = rows[r]
        k = bkeys[b]
        h = np.int64(mix64(k) & mask)
        while htab[h, 1] != 0 and htab[h, 0] != k:
            h = np.int64((np.uint64(h) + _ONE) & mask)
        if htab[h, 1] == 0:
            s = nrows
            nrows += 1
            htab[h, 0] = k
            htab[h, 1] = np.uint64(s + 1)
            slot_keys[s] = k
        else:
            s = np.int64(htab[h, 1]) - 1
            if brecs[b, 0] < recs[s, 0] or (brecs[b, 0] == recs[s, 0] and brecs[b, 1] < recs[s, 1]):
                out_slot[r] = -1
                continue
        for w in range(width):
            recs[s, w] = brecs[b, w]
        out_slot[r] = s
    return nrows


@njit(cache=True, nogil=True)
def mem_rehash(slot_keys, nrows, htab):
    """Rebuild the hash table (all zeros) from slot_keys[:nrows]."""
    mask = np.uint64(htab.shape[0] - 1)
    for s in range(nrows):
        k = slot_keys[s]
        h = np.int64(mix64(k) & mask)
        while htab[h, 1] != 0:
            h = np.int64((np.uint64(h) + _ONE) & mask)
        htab[h, 0] = k
        htab[h, 1] = np.uint64(s + 1)


@njit(cache=True, nogil=True)
def mem_lookup(q, todo, ntodo, htab, recs, out, loc, srcid):
    """Memtable counterpart of table_lookup (same outputs and todo compaction)."""
    mask = np.uint64(htab.shape[0] - 1)
    width = recs.shape[1]
    tag = np.int64(srcid) << LOC_SHIFT
    rem = 0
    for j in range(ntodo):
        i = todo[j]
        k = q[i]
        h = np.int64(mix64(k) & mask)
        while htab[h, 1] != 0 and htab[h, 0] != k:
            h = np.int64((np.uint64(h) + _ONE) & mask)
        if htab[h, 1] == 0:
            todo[rem] = i
            rem += 1
        else:
            s = np.int64(htab[h, 1]) - 1
            for w in range(width):
                out[i, w] = recs[s, w]
            loc[i] = tag | s
    return rem
