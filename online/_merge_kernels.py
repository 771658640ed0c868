"""numba kernels of merging sorted runs (compaction, scans): the two-way merge of keys with global
row ids and the gathers of record headers and rows. Pure functions over numpy arrays,
`@njit(cache=True, nogil=True)` so that a compaction runs beside the writers; wrapped by
merge.py. Stateless.
"""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def merge_two(ka, ga, kb, gb, hdr, outk, outg):
    """Merge sorted unique runs a (newer) and b (older) of keys with global row ids; on equal keys
    keep the row with the larger (event_ts, created_ts, seq) of hdr[gid], a on ties. Returns the
    merged length."""
    na = ka.shape[0]
    nb = kb.shape[0]
    i = 0
    j = 0
    m = 0
    while i < na and j < nb:
        if ka[i] < kb[j]:
            outk[m] = ka[i]
            outg[m] = ga[i]
            i += 1
        elif kb[j] < ka[i]:
            outk[m] = kb[j]
            outg[m] = gb[j]
            j += 1
        else:
            a = ga[i]
            b = gb[j]
            older_wins = hdr[b, 0] > hdr[a, 0] or (
                hdr[b, 0] == hdr[a, 0]
                and (hdr[b, 1] > hdr[a, 1] or (hdr[b, 1] == hdr[a, 1] and hdr[b, 2] > hdr[a, 2]))
            )
            outk[m] = ka[i]
            outg[m] = b if older_wins else a
            i += 1
            j += 1
        m += 1
    while i < na:
        outk[m] = ka[i]
        outg[m] = ga[i]
        i += 1
        m += 1
    while j < nb:
        outk[m] = kb[j]
        outg[m] = gb[j]
        j += 1
        m += 1
    return m


@njit(cache=True, nogil=True)
def copy_headers(recs, out, offset):
    """out[offset + i] = recs[i, :3] (event_ts, created_ts, seq), without holding the GIL."""
    for i in range(recs.shape[0]):
        out[offset + i, 0] = recs[i, 0]
        out[offset + i, 1] = recs[i, 1]
        out[offset + i, 2] = recs[i, 2]


@njit(cache=True, nogil=True)
def gather_run(gids, lo, hi, recs, out):
    """For every m with lo <= gids[m] < hi: out[m] = recs[gids[m] - lo] (one input run of a
    merge; gids are global row ids), without holding the GIL."""
    width = recs.shape[1]
    for m in range(gids.shape[0]):
        g = gids[m]
        if g >= lo and g < hi:
            p = g - lo
            for w in range(width):
                out[m, w] = recs[p, w]
