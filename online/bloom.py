"""BloomFilter: a blocked bloom filter over uint64 keys (one 512-bit block per key, so a probe
costs one cache miss). Rebuilt from an sstable's keys when it is opened, never stored.
Immutable after build; safe to read from any thread."""

from __future__ import annotations

import numpy as np

from online import _kernels as K

__all__ = ["BloomFilter"]


class BloomFilter:
    """Bits for `keys` at `bits_per_key`; `may_contain` has no false negatives."""

    def __init__(self, keys: np.ndarray, bits_per_key: int = 10) -> None:
        nblocks = max(1, -(-len(keys) * bits_per_key // 512))
        self.words = np.zeros(nblocks * 8, dtype=np.uint64)
        if len(keys):
            K.bloom_build(keys, self.words)

    @property
    def nbytes(self) -> int:
        return self.words.nbytes

    def may_contain(self, keys: np.ndarray) -> np.ndarray:
        """(n,) bool: False means the key is certainly absent."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        out = np.empty(len(keys), dtype=np.bool_)
        K.bloom_check_many(self.words, keys, out)
        return out
