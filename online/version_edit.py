"""VersionEdit: one change of the tree's structure — sstables added and removed per level, the
memtable whose rows were flushed, the new durable_seq — applied alike to the on-disk Manifest and
to the live Version (by `VersionSet.log_and_apply`, LevelDB's LogAndApply), so the two never
drift apart.

Placement: the sstables added to a level go in front of the ones it keeps (at L0, newest first;
below L0 a compaction removes the whole level it writes, so its output is the level's one sorted
run); empty trailing levels are dropped, L0 always stays. Immutable after construction; the
apply functions are pure (they build new objects) and safe to call from any thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from online.manifest import Manifest
from online.memtable import Memtable
from online.sstable import SSTable
from online.version import Version

__all__ = ["VersionEdit"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class VersionEdit:
    """added: (level, sstable) pairs, in lookup order within a level. removed: file names of the
    sstables that leave the tree, whatever their level. durable_seq: the manifest's durable_seq
    becomes at least this (the max seq of a flushed memtable). flushed: the frozen memtable whose
    rows the added sstable now holds; it leaves the Version's memtables."""

    added: tuple[tuple[int, SSTable], ...] = ()
    removed: frozenset[str] = frozenset()
    durable_seq: int = 0
    flushed: Memtable | None = None

    def apply_to_manifest(self, manifest: Manifest) -> Manifest:
        """A new Manifest: `manifest` with this edit applied (`manifest` is left unchanged)."""
        levels = _edit_levels(
            manifest.levels, [(lv, t.meta) for lv, t in self.added], self.removed, _meta_name
        )
        return dataclasses.replace(
            manifest, levels=levels, durable_seq=max(manifest.durable_seq, self.durable_seq)
        )

    def apply_to_version(self, version: Version) -> Version:
        """A new Version: `version` with this edit applied."""
        levels = _edit_levels(version.levels, list(self.added), self.removed, _table_name)
        mems = tuple(m for m in version.mems if m is not self.flushed)
        return Version(mems, tuple(tuple(lv) for lv in levels), version.bloom_last_level)


def _meta_name(meta: dict[str, Any]) -> str:
    return meta["file"]


def _table_name(t: SSTable) -> str:
    return t.name


def _edit_levels(
    levels: Sequence[Sequence[_T]],
    added: list[tuple[int, _T]],
    removed: frozenset[str],
    name: Callable[[_T], str],
) -> list[list[_T]]:
    """New per-level lists: `levels` without the entries named in `removed`, each added entry in
    front of the entries its level keeps, empty trailing levels dropped (L0 stays)."""
    out = [[x for x in lv if name(x) not in removed] for lv in levels]
    for i in sorted({lv for lv, _ in added}):
        while len(out) <= i:
            out.append([])
        new = [x for lv, x in added if lv == i]
        if i > 0 and out[i]:
            raise AssertionError(f"L{i} would hold more than one sorted run")
        out[i] = new + out[i]
    while len(out) > 1 and not out[-1]:
        out.pop()
    return out or [[]]
