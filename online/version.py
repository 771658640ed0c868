"""Version: one immutable snapshot of the tree's structure — its memtables and live sstables.

The tree swaps its current Version atomically (a single attribute store) under a small lock; a
reader takes the current Version once and uses it to the end of its lookup, so it never sees a
half-installed compaction. Immutable; safe to share between threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from online.memtable import Memtable
from online.sstable import SSTable

__all__ = ["Version"]


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
        return [(i, t) for i, level in enumerate(self.levels) for t in level]
