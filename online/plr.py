"""PLRModel: a piecewise linear model of an sstable's sorted keys (Bourbon's learned index; fitted
by the optimal convex-hull PLA or by Bourbon's Greedy-PLR) and the radix table that finds a key's
segment.

Contract: for every key of the table, |predict(key) - position| <= delta. A lookup searches only
[predict - delta, predict + delta]. Fitting is separate from searching (the search is part of
`_kernels.table_lookup`). Immutable after build; safe to read from any thread.
"""

from __future__ import annotations

import time

import numpy as np

from online import _kernels as K
from online import _plr_kernels as P
from online._pla import plr_fit_optimal

__all__ = ["PLRModel"]

_FIT_MARGIN = 1e-6  # fit to delta*(1 - margin) so float rounding can never exceed delta
MAX_RADIX_BITS = 22  # cap of the radix table (4 MiB of int32)
RADIX_LINEAR = K.RADIX_LINEAR
RADIX_LOG = K.RADIX_LOG


def _prefix_base(x: np.ndarray, kind: int) -> np.ndarray:
    """The monotone map from key - min to the value whose top bits form the radix prefix."""
    if kind == RADIX_LINEAR:
        return x
    bits = x.astype(np.float64).view(np.uint64)
    return np.where(bits >= K.LOG_BASE, bits - K.LOG_BASE, np.uint64(0))


def _radix_shift(top: int, entries: int) -> int:
    """The smallest shift (<= 63: a 64-bit shift is undefined) with (top >> shift) + 1 <= entries."""
    shift = max(0, top.bit_length() - entries.bit_length())
    while shift < 63 and (top >> shift) + 1 > entries:
        shift += 1
    return shift


class PLRModel:
    """Segments (start key, float32 slope, uint32 start position) plus a radix table (int32) over the top bits of
    `key - min_key`: radix[p] = first segment whose start has prefix >= p."""

    def __init__(
        self, keys: np.ndarray, delta: int = 8, radix: str = "auto", fit: str = "optimal"
    ) -> None:
        """keys: sorted ascending, unique uint64, at least one. radix: "linear" buckets the top
        bits of key - min; "log" the top bits of float64(key - min) (log-scale buckets for skewed
        keys such as lognormal); "auto" picks the one with the fewer expected search steps.
        fit: "optimal" (_pla.plr_fit_optimal, the convex-hull PLA) or "greedy" (Greedy-PLR)."""
        if len(keys) == 0:
            raise ValueError("PLRModel needs at least one key")
        t0 = time.perf_counter_ns()
        self.delta = int(delta)
        n = len(keys)
        if n >= 1 << 32:
            raise ValueError("PLRModel stores positions as uint32: at most 2^32 - 1 keys")
        # per segment (start key, float32 bits of the slope | start position << 32): one 16-byte
        # entry, so the lookup's segment search and its prediction read the same cache line
        buf = np.empty((n, 2), dtype=np.uint64)
        if fit == "optimal":
            ns = plr_fit_optimal(keys, float(delta), buf, buf.view(np.float32))
        elif fit == "greedy":
            ns = P.plr_fit(keys, float(delta) * (1.0 - _FIT_MARGIN), buf, buf.view(np.float32))
        else:
            raise ValueError(f"fit must be 'optimal' or 'greedy', got {fit!r}")
        self.segs = buf[:ns].copy()
        del buf
        self.segf = self.segs.view(np.float32)  # the slope of segment s is segf[s, 2]
        self.min_key = int(keys[0])
        span = int(keys[-1]) - self.min_key
        # at most one radix entry per two segments (and 2^MAX_RADIX_BITS): a key's segment
        # search then covers ~3-5 segments, and the table adds <= 2 bytes per 16-byte segment
        entries = max(1, min(ns // 2, 1 << MAX_RADIX_BITS))
        kinds = {"linear": RADIX_LINEAR, "log": RADIX_LOG}
        if radix not in ("auto", *kinds):
            raise ValueError(f"radix must be 'auto', 'linear' or 'log', got {radix!r}")
        best = None
        for name, kind in kinds.items():
            if radix not in ("auto", name):
                continue
            top = _prefix_base(np.array([span], dtype=np.uint64), kind)[0]
            shift = _radix_shift(int(top), entries)
            prefixes = _prefix_base(self.seg_keys - np.uint64(self.min_key), kind) >> np.uint64(
                shift
            )
            nprefix = (int(top) >> shift) + 2
            table = np.searchsorted(prefixes, np.arange(nprefix, dtype=np.uint64))
            # expected segment-search steps, weighted by segments: log2 of the bucket sizes
            counts = np.diff(table)
            cost = float((counts * np.log2(counts + 1)).sum()) / ns
            if best is None or cost < best[0]:
                best = (cost, kind, shift, table.astype(np.int32))
        assert best is not None
        _, self.radix_kind, self.shift, self.radix = best
        self.build_ns = time.perf_counter_ns() - t0

    def prefix(self, q: np.ndarray) -> np.ndarray:
        """Radix prefix of keys q (>= the first key), as the lookup computes it."""
        x = np.asarray(q, dtype=np.uint64) - np.uint64(self.min_key)
        return (_prefix_base(x, self.radix_kind) >> np.uint64(self.shift)).astype(np.int64)

    @property
    def seg_keys(self) -> np.ndarray:
        """The start key of every segment (a view)."""
        return self.segs[:, 0]

    @property
    def segments(self) -> int:
        return len(self.segs)

    @property
    def nbytes(self) -> int:
        """Model size in memory: 16 bytes per segment (first key, float32 slope, uint32 position)
        + 4 bytes per radix entry."""
        return self.segs.nbytes + self.radix.nbytes

    def predict(self, q: np.ndarray) -> np.ndarray:
        """Predicted positions (float64) of q (each >= the first key), as the lookup computes them."""
        q = np.ascontiguousarray(q, dtype=np.uint64)
        out = np.empty(len(q), dtype=np.float64)
        P.plr_predict(self.segs, self.segf, q, out)
        return out
