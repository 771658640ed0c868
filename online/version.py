"""Version: one immutable snapshot of the tree's structure — its memtables and live sstables — and
the read path over it (`lookup`: memtables, then the sstables in lookup order, first hit wins).

The tree swaps its current Version atomically (a single attribute store, see version_set.py); a
reader takes the current Version once and uses it to the end of its lookup, so it never sees a
half-installed flush or compaction. Immutable; safe to share between threads. `lookup` also
updates each sstable's lookup statistics (plain int updates under the GIL: approximate when
threads race, which the analyzer tolerates).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from online import _kernels as K
from online.memtable import Memtable
from online.schema import Layout
from online.sstable import SSTable

__all__ = ["Version"]

_NO_HASHES = np.empty((0, 2), dtype=np.uint64)  # table_lookup then hashes each key itself
_HASH_PASS_MIN = 16  # above this many keys, hash them once for all sstables (bloom_hashes)


@dataclass(frozen=True)
class Version:
    """mems: the active memtable first, then frozen ones waiting for their flush, newest first.
    levels: levels[0] is L0 (overlapping sstables, newest first); levels[i > 0] hold one sorted run.
    plan: (sstable, level, use_bloom) in lookup order, derived from levels."""

    mems: tuple[Memtable, ...]
    levels: tuple[tuple[SSTable, ...], ...]
    bloom_last_level: bool = False
    plan: tuple[tuple[SSTable, int, bool], ...] = field(init=False)

    def __post_init__(self) -> None:
        flat = [(t, i) for i, level in enumerate(self.levels) for t in level]
        # the last sstable a key can reach skips its filter unless bloom_last_level: a key that
        # gets there is usually present (RocksDB's optimize_filters_for_hits)
        plan = tuple(
            (t, i, self.bloom_last_level or j != len(flat) - 1) for j, (t, i) in enumerate(flat)
        )
        object.__setattr__(self, "plan", plan)

    def tables(self) -> list[tuple[int, SSTable]]:
        """(level, sstable) of every live sstable, in lookup order."""
        return [(i, t) for i, level in enumerate(self.levels) for t in level]

    def newer_rows(
        self, layout: Layout, keys: np.ndarray, ev: np.ndarray, cr: np.ndarray
    ) -> np.ndarray:
        """Positions, in batch order, of the batch rows (keys, event times ev, created times cr)
        not older than the version of their key visible here: (ev, cr) >= the visible pair, so
        that a later write wins ties."""
        rows = np.arange(len(keys), dtype=np.int64)
        recs, loc, _ = self.lookup(layout, keys, for_write=True)
        found = loc >= 0
        if found.any():
            vev, vcr = recs[:, 0], recs[:, 1]
            keep = ~found | (ev > vev) | ((ev == vev) & (cr >= vcr))
            rows = rows[keep]
        return rows

    def level_stats(self, retired: Callable[[int], tuple[int, int]]) -> list[dict[str, Any]]:
        """Per level: sstables, keys, bytes, index modes, model and filter sizes, and lookups
        (those of its live sstables plus retired(level) = (positive, negative) of the gone)."""
        out = []
        for i, lv in enumerate(self.levels):
            modes: dict[str, int] = {}
            for t in lv:
                modes[t.index_mode] = modes.get(t.index_mode, 0) + 1
            positive, negative = retired(i)
            out.append(
                {
                    "level": i,
                    "sstables": len(lv),
                    "keys": sum(len(t) for t in lv),
                    "bytes": sum(t.meta["bytes"] for t in lv),
                    "index_modes": modes,
                    "plr_segments": sum(t.model.segments for t in lv if t.model),
                    "model_bytes": sum(t.model.nbytes for t in lv if t.model),
                    "fence_bytes": sum(t.fence_bytes for t in lv),
                    "bloom_bytes": sum(t.bloom.nbytes for t in lv),
                    "lookups_positive": positive + sum(t.lookups_positive for t in lv),
                    "lookups_negative": negative + sum(t.lookups_negative for t in lv),
                }
            )
        return out

    def lookup(
        self, layout: Layout, q: np.ndarray, for_write: bool = False
    ) -> tuple[np.ndarray, np.ndarray, list[Any]]:
        """(records (n, rowwords) in `layout`, loc (n,) = source << LOC_SHIFT | position or -1,
        sources) of the keys q (uint64, C-contiguous, writable). Every output is new and owned by
        the caller; sources[i] reads the string values of the rows found in source i.

        for_write: the write path's own check of the visible versions: always probes the bloom
        filters, takes no string snapshots and records no statistics."""
        n = len(q)
        out = np.zeros((n, layout.rowwords), dtype=np.int64)
        loc = np.empty(n, dtype=np.int64)
        loc.fill(-1)
        todo = np.arange(n, dtype=np.int64)
        ntodo = n
        sources: list[Any] = []
        for mem in self.mems:
            if ntodo == 0:
                break
            source: Any = mem
            if mem.nrows:
                ntodo, source = mem.lookup(q, todo, ntodo, out, loc, len(sources), not for_write)
            sources.append(source)
        perf = time.perf_counter_ns
        hq = _NO_HASHES
        if ntodo > _HASH_PASS_MIN and (for_write or any(b for _, _, b in self.plan)):
            hq = np.empty((n, 2), dtype=np.uint64)
            K.bloom_hashes(q, hq)
        for t, _level, use_bloom in self.plan:
            if ntodo == 0:
                break
            sid = len(sources)
            sources.append(t)
            same = t.layout is layout
            dst = out if same else np.zeros((n, t.layout.rowwords), dtype=np.int64)
            mode = t.index_code
            t0 = perf()
            rem = t.lookup(q, todo, ntodo, dst, loc, sid, 1 if use_bloom or for_write else 0, hq)
            dt = perf() - t0
            if not for_write:
                untimed = t.untimed_calls
                if untimed[mode]:
                    # a warm-up call (numba's compilation or cache load, the mapping's page
                    # faults) would teach the analyzer a cost no later call pays
                    untimed[mode] -= 1
                elif mode == K.MODE_LEARNED:
                    t.ns_learned += dt
                    t.keys_learned += ntodo
                else:
                    t.ns_block += dt
                    t.keys_block += ntodo
                t.lookups_positive += ntodo - rem
                t.lookups_negative += rem
            if not same and rem < ntodo:
                idx = np.flatnonzero((loc >> K.LOC_SHIFT) == sid)
                out[idx] = layout.convert(t.layout, dst[idx])
            ntodo = rem
        return out, loc, sources
