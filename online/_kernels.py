"""numba kernels of the engine: hashing, bloom filters, sstable and memtable lookups, PLR fitting,
merging. Pure functions over numpy arrays, `@njit(cache=True, nogil=True)`; the typed wrappers live
beside the structures that own the arrays (bloom.py, plr.py, sstable.py, memtable.py, merge.py).

Records are (n, rowwords) int64 arrays (see schema.py); words 0, 1, 2 are event_ts, created_ts, seq.
Lookups advance GROUP keys in lockstep, one search step for each before the next, so that their
cache misses overlap instead of queueing.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GROUP = 32  # keys advanced in lockstep by the lookup kernels (16 -> 32: learned -3-11%, block -3-5%)
BLOOM_K = 6  # probes per key, all inside one 512-bit block — on-disk format is rebuilt, not stored
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_SALT = np.uint64(0x5851F42D4C957F2D)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_S6 = np.uint64(6)
_S9 = np.uint64(9)
_M63 = np.uint64(63)
_M511 = np.uint64(511)
_ONE = np.uint64(1)
MODE_BLOCK = 0
MODE_LEARNED = 1
RADIX_LINEAR = 0  # radix prefix = (key - min) >> shift
RADIX_LOG = 1  # radix prefix = (bits of float64(key - min) - LOG_BASE) >> shift: log-scale buckets
LOG_BASE = np.uint64(0x3FF0000000000000)  # bits of 1.0: smaller (0) maps to prefix 0
LOC_SHIFT = 40  # loc = source id << 40 | position; sstables stay below 2^40 rows


@njit(cache=True, nogil=True)
def mix64(x):
    """splitmix64 finalizer: a bijective 64-bit hash."""
    x = x + _GOLD
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


# ---- bloom filter ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def bloom_hash(key):
    """The two hashes of a key that every filter probe uses: h picks the block, h2 the bits."""
    h = mix64(key)
    return h, mix64(h ^ _SALT)


@njit(cache=True, nogil=True)
def bloom_hashes(keys, out):
    """out[i] = bloom_hash(keys[i]): computed once per lookup batch, shared by every filter it
    probes (a lookup through ten L0 sstables hashed each key ten times)."""
    for i in range(keys.shape[0]):
        h, h2 = bloom_hash(keys[i])
        out[i, 0] = h
        out[i, 1] = h2


@njit(cache=True, nogil=True)
def _bloom_block(h, nb):
    """Block of hash h among nb blocks (nb < 2^32): multiply-shift instead of a 64-bit division."""
    return np.int64(((h >> _S32) * nb) >> _S32) * 8


@njit(cache=True, nogil=True)
def bloom_build(keys, words):
    """Set the bits of every key; words: uint64 zeros, a multiple of 8 long (512-bit blocks)."""
    nb = np.uint64(words.shape[0] // 8)
    for i in range(keys.shape[0]):
        h, h2 = bloom_hash(keys[i])
        blk = _bloom_block(h, nb)
        for _j in range(BLOOM_K):
            bit = h2 & _M511
            h2 = h2 >> _S9
            words[blk + np.int64(bit >> _S6)] |= _ONE << (bit & _M63)


@njit(cache=True, nogil=True)
def bloom_check_hashed(words, h, h2):
    blk = _bloom_block(h, np.uint64(words.shape[0] // 8))
    for _j in range(BLOOM_K):
        bit = h2 & _M511
        h2 = h2 >> _S9
        if words[blk + np.int64(bit >> _S6)] & (_ONE << (bit & _M63)) == 0:
            return False
    return True


@njit(cache=True, nogil=True)
def bloom_check_many(words, keys, out):
    for i in range(keys.shape[0]):
        h, h2 = bloom_hash(keys[i])
        out[i] = bloom_check_hashed(words, h, h2)


# ---- searching ------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _lockstep(arr, base, cnt, qk, gn):
    """For each g with cnt[g] > 1: narrow [base, base+cnt) to the last index whose value <= qk[g]
    (assuming arr[base] <= qk[g]); all keys of the group advance one step per round."""
    active = True
    while active:
        active = False
        for g in range(gn):
            c = cnt[g]
            if c > 1:
                h = c >> 1
                if arr[base[g] + h] <= qk[g]:
                    base[g] += h
                c -= h
                cnt[g] = c
                if c > 1:
                    active = True


@njit(cache=True, nogil=True)
def _lockstep_segs(segs, base, cnt, qk, gn):
    """_lockstep over the start keys segs[:, 0] of (n, 2) PLR segments. A copy on purpose:
    _lockstep over the strided view segs[:, 0] measured 2-3% slower per learned lookup."""
    active = True
    while active:
        active = False
        for g in range(gn):
            c = cnt[g]
            if c > 1:
                h = c >> 1
                if segs[base[g] + h, 0] <= qk[g]:
                    base[g] += h
                c -= h
                cnt[g] = c
                if c > 1:
                    active = True


@njit(cache=True, nogil=True)
def table_lookup(
    q, todo, ntodo, tkeys, recs, mode, fences, segs, segf, radix, rshift, rkind, fstride, delta,
    bloom, use_bloom, hq, out, loc, srcid,
):  # fmt: skip
    """Look up q[todo[:ntodo]] in one sstable (sorted unique tkeys, records recs).

    A found key i gets its record copied to out[i] and loc[i] = srcid << LOC_SHIFT | position.
    Unfound indices are compacted to the front of todo; returns how many remain.
    mode MODE_BLOCK: fences are every fstride-th key. MODE_LEARNED: segs[s] = (start key, float32
    bits of the slope | start position << 32) per PLR segment, one 16-byte entry so that the
    segment search and the prediction share a cache line; segf is segs viewed as float32 (the
    slope is segf[s, 2]). The segment is found through radix (kind rkind: RADIX_LINEAR or
    RADIX_LOG, see plr.py) over the top bits of (key - min) >> rshift; the last-mile search covers
    [pred - delta, pred + delta].
    With use_bloom, hq[i] = bloom_hash(q[i]) (computed once for all the sstables of a lookup), or
    hq empty: each key is hashed here (cheaper for a handful of keys than a separate pass).
    Ints instead of bools or numpy scalars keep the Python -> numba call cheap.
    """
    nk = tkeys.shape[0]
    kmin = tkeys[0]
    kmax = tkeys[nk - 1]
    nf = fences.shape[0]
    fbuf = np.empty(1, np.float64)
    fbits = fbuf.view(np.uint64)
    sh = np.uint64(rshift)
    width = recs.shape[1]
    tag = np.int64(srcid) << LOC_SHIFT
    base = np.empty(GROUP, np.int64)
    cnt = np.empty(GROUP, np.int64)
    qk = np.empty(GROUP, np.uint64)
    qi = np.empty(GROUP, np.int64)
    ok = np.empty(GROUP, np.bool_)
    rem = 0
    for g0 in range(0, ntodo, GROUP):
        gn = min(GROUP, ntodo - g0)
        for g in range(gn):
            i = todo[g0 + g]
            qi[g] = i
            k = q[i]
            qk[g] = k
            good = k >= kmin and k <= kmax
            if good and use_bloom != 0:
                if hq.shape[0] == 0:
                    h, h2 = bloom_hash(k)
                    good = bloom_check_hashed(bloom, h, h2)
                else:
                    good = bloom_check_hashed(bloom, hq[i, 0], hq[i, 1])
            ok[g] = good
            cnt[g] = 0
            base[g] = 0
        if mode == MODE_BLOCK:
            for g in range(gn):
                if ok[g]:
                    cnt[g] = nf
            _lockstep(fences, base, cnt, qk, gn)
            for g in range(gn):
                if ok[g]:
                    b = base[g] * fstride
                    base[g] = b
                    cnt[g] = min(fstride, nk - b)
        else:
            for g in range(gn):
                if ok[g]:
                    x = qk[g] - kmin
                    if rkind == RADIX_LOG:
                        fbuf[0] = np.float64(x)
                        b = fbits[0]
                        x = b - LOG_BASE if b >= LOG_BASE else np.uint64(0)
                    p = np.int64(x >> sh)
                    s0 = max(np.int64(radix[p]) - 1, 0)
                    base[g] = s0
                    cnt[g] = max(np.int64(radix[p + 1]) - s0, 1)
            _lockstep_segs(segs, base, cnt, qk, gn)
            for g in range(gn):
                if ok[g]:
                    s = base[g]
                    dxk = np.float64(qk[g] - segs[s, 0])
                    pred = np.float64(segs[s, 1] >> _S32) + np.float64(segf[s, 2]) * dxk
                    lo = np.int64(np.floor(pred - delta))
                    hi = np.int64(np.floor(pred + delta)) + 2
                    lo = max(0, min(lo, nk - 1))
                    hi = max(lo + 1, min(hi, nk))
                    base[g] = lo
                    cnt[g] = hi - lo
        _lockstep(tkeys, base, cnt, qk, gn)
        for g in range(gn):
            i = qi[g]
            p = base[g]
            if ok[g] and tkeys[p] == qk[g]:
                for w in range(width):
                    out[i, w] = recs[p, w]
                loc[i] = tag | p
            else:
                todo[rem] = i
                rem += 1
    return rem


@njit(cache=True, nogil=True)
def binary_search_many(tkeys, q, out):
    """Baseline for the benchmark: out[i] = position of q[i] in sorted tkeys or -1, GROUP keys in
    lockstep (a plain numba binary search over the whole array, no index)."""
    nk = tkeys.shape[0]
    base = np.empty(GROUP, np.int64)
    cnt = np.empty(GROUP, np.int64)
    qk = np.empty(GROUP, np.uint64)
    n = q.shape[0]
    for g0 in range(0, n, GROUP):
        gn = min(GROUP, n - g0)
        for g in range(gn):
            qk[g] = q[g0 + g]
            base[g] = 0
            cnt[g] = nk if qk[g] >= tkeys[0] else 0
        _lockstep(tkeys, base, cnt, qk, gn)
        for g in range(gn):
            p = base[g]
            out[g0 + g] = p if nk > 0 and tkeys[p] == qk[g] else -1


# ---- PLR --------------------------------------------------------------------------------------


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


# ---- memtable -------------------------------------------------------------------------------


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


# ---- batches and merges -----------------------------------------------------------------------


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
