"""Compaction picking: which sstables to merge next, and into which level. Pure functions of a
Version and the options; the tree runs the merge (tree.py) and installs `Compaction.edit`.

Leveled, as LevelDB: L0 holds overlapping sstables, each deeper level one sorted run about
`size_ratio` x the one above. L0 is merged into L1 once it holds `l0_trigger` sstables; a level
i >= 1 over its capacity (level1_bytes x size_ratio^(i-1)) is merged into level i + 1. A merge
takes whole levels, so its output is the output level's one sorted run. Stateless; thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass

from online.options import TreeOptions
from online.sstable import SSTable
from online.version import Version
from online.version_edit import VersionEdit

__all__ = ["Compaction", "pick_compaction", "full_compaction"]


@dataclass(frozen=True)
class Compaction:
    """Merge `inputs` ((level, sstable), in lookup order: newest first) into one sstable at
    `output_level`; the inputs hold every sstable of the output level."""

    inputs: tuple[tuple[int, SSTable], ...]
    output_level: int

    def edit(self, output: SSTable | None) -> VersionEdit:
        """The edit that replaces the inputs by `output` (None: every input row was dropped)."""
        added = ((self.output_level, output),) if output is not None else ()
        return VersionEdit(added=added, removed=frozenset(t.name for _, t in self.inputs))


def pick_compaction(version: Version, options: TreeOptions) -> Compaction | None:
    """The compaction `version` needs first (L0 before deeper levels, shallow before deep), or
    None when every level is within its bounds."""
    levels = version.levels
    if len(levels[0]) >= options.l0_trigger:
        return _merge_into(levels, 0, 1)
    cap = options.level1_bytes
    for i in range(1, len(levels)):
        if sum(t.meta["bytes"] for t in levels[i]) > cap:
            return _merge_into(levels, i, i + 1)
        cap *= options.size_ratio
    return None


def full_compaction(version: Version) -> Compaction | None:
    """Merge every sstable into one sorted run at the deepest level (at least L1), or None when
    the sstables already are one run below L0."""
    tables = version.tables()
    if not tables or (len(tables) == 1 and tables[0][0] > 0):
        return None
    return Compaction(tuple(tables), max(1, max(level for level, _ in tables)))


def _merge_into(levels: tuple[tuple[SSTable, ...], ...], src: int, dst: int) -> Compaction:
    inputs = [(src, t) for t in levels[src]]
    if dst < len(levels):
        inputs += [(dst, t) for t in levels[dst]]
    return Compaction(tuple(inputs), dst)
