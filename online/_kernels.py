"""numba kernels of lookups: hashing, bloom filters and the sstable search. Pure functions over
numpy arrays, `@njit(cache=True, nogil=True)`; their typed wrappers live beside the structures that
own the arrays (bloom.py, sstable.py). The other kernel families have their own private modules:
the PLR fit (_plr_kernels.py, _pla.py), the memtable hash table (_hash_kernels.py) and merging
(_merge_kernels.py).

Records are (n, rowwords) int64 arrays (see schema.py); words 0, 1, 2 are event_ts, created_ts, seq.
Lookups advance GROUP keys in lockstep, one search step for each before the next, so that their
cache misses overlap instead of queueing. Stateless; safe to call from any thread.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GROUP = 32  # keys advanced in lockstep by the lookup kernels: enough misses in flight per core
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
    """out[i] = bloom_hash(keys[i]): computed once per lookup batch and shared by every filter it
    probes, instead of once per filter."""
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


# the signature is kept on three lines (the fmt: skip): 20 parameters one per line would bury
# the docstring
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
