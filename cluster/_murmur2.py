"""Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`) as a numba kernel.

The kernel hashes every string of an Arrow-style (offsets, data) pair. Pure and stateless; safe
to call from any thread (nogil).
"""

from __future__ import annotations

import numpy as np
from numba import njit

SEED = 0x9747B28C  # Kafka's murmur2 seed: part of the partitioning contract, do not change
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


@njit(cache=True, nogil=True)
def murmur2_many(
    data: np.ndarray, offsets: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover
    """out[i] = murmur2(data[offsets[i]:offsets[i+1]]) as a signed int32.

    data: uint8; offsets: int32 or int64, len(out) + 1 entries, non-decreasing; out: int32.
    Arithmetic runs in uint64 masked to 32 bits, which is Java's wrapping int arithmetic.
    """
    m = np.uint64(_M)
    mask = np.uint64(_MASK)
    for i in range(out.shape[0]):
        start = np.int64(offsets[i])
        length = np.int64(offsets[i + 1]) - start
        h = (np.uint64(SEED) ^ np.uint64(length)) & mask
        n4 = length // 4
        for j in range(n4):
            p = start + 4 * j
            k = (
                np.uint64(data[p])
                | (np.uint64(data[p + 1]) << np.uint64(8))
                | (np.uint64(data[p + 2]) << np.uint64(16))
                | (np.uint64(data[p + 3]) << np.uint64(24))
            )
            k = (k * m) & mask
            k ^= k >> np.uint64(24)
            k = (k * m) & mask
            h = (h * m) & mask
            h ^= k
        tail = start + 4 * n4
        rest = length - 4 * n4
        if rest == 3:
            h ^= np.uint64(data[tail + 2]) << np.uint64(16)
        if rest >= 2:
            h ^= np.uint64(data[tail + 1]) << np.uint64(8)
        if rest >= 1:
            h ^= np.uint64(data[tail])
            h = (h * m) & mask
        h ^= h >> np.uint64(13)
        h = (h * m) & mask
        h ^= h >> np.uint64(15)
        v = np.int64(h)
        if v >= 2147483648:  # Java's int is signed: wrap the top bit
            v -= 4294967296
        out[i] = v
