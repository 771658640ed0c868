"""Opening a tree's directory: the directory lock, the manifest (created for a new tree; loaded,
checked against the given fields and extended when fields were appended), the removal of orphan
files a crash left behind, and the opening of every sstable the manifest names.

Invariant after `recover`: the directory holds exactly the sstables the manifest names (plus the
lock file and the manifest), and `next_file` is above every file number ever seen in it, so a
number is never reused. Runs once per tree, before any other thread uses it.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO

from online.errors import OnlineError, SchemaMismatchError
from online.manifest import Manifest
from online.options import TreeOptions
from online.schema import Layout
from online.sstable import SSTable

__all__ = ["lock_directory", "unlock_directory", "recover"]

log = logging.getLogger(__name__)
LOCK_NAME = "LOCK"  # on-disk name, do not change: held with flock while a tree is open

Levels = tuple[tuple[SSTable, ...], ...]


def lock_directory(directory: Path) -> IO[str]:
    """Take the directory's lock file (OnlineError if another tree holds it); keep the returned
    file open while the tree is open and give it to `unlock_directory`."""
    f = open(directory / LOCK_NAME, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise OnlineError(f"{directory} is already open by another LSMTree") from None
    return f


def unlock_directory(f: IO[str]) -> None:
    fcntl.flock(f, fcntl.LOCK_UN)
    f.close()


def recover(
    directory: Path,
    layout: Layout,
    options: TreeOptions,
    learn: Callable[[SSTable], None] | None,
) -> tuple[Manifest, Levels]:
    """(manifest, sstables per level) of the tree in `directory`, whose fields are `layout`'s
    (the stored ones, or those with fields appended); `learn` is called on every sstable opened
    when the index is learned up front. Raises SchemaMismatchError for other field changes and
    OnlineCorruptionError for a damaged manifest or sstable."""
    man = _load_manifest(directory, layout)
    _remove_orphans(directory, man)
    layouts = {layout.nfields: layout}  # sstables written before fields were appended
    levels = []
    for metas in man.levels:
        tables = []
        for meta in metas:
            nf = meta["nfields"]
            if nf not in layouts:
                layouts[nf] = Layout(layout.fields[:nf])
            t = SSTable(
                directory, meta, layouts[nf], options.bloom_bits_per_key, options.verify_checksums
            )
            if learn is not None:
                learn(t)
            tables.append(t)
        levels.append(tuple(tables))
    return man, tuple(levels) or ((),)


def _load_manifest(directory: Path, layout: Layout) -> Manifest:
    man = Manifest.load(directory)
    new = layout.to_json()
    if man is None:
        man = Manifest(fields=new)
        man.save(directory)
    elif man.fields != new:
        check_fields(man.fields, new)
        man.fields = new
        man.save(directory)
    return man


def check_fields(stored: list[list[str]], given: list[list[str]]) -> None:
    """SchemaMismatchError unless `given` is `stored` with fields appended ([name, dtype] each)."""
    for i, s in enumerate(stored):
        if i >= len(given):
            raise SchemaMismatchError(
                f"stored field {s[0]!r} ({s[1]}) is missing from the given fields; fields can "
                "only be appended"
            )
        if list(given[i]) != list(s):
            raise SchemaMismatchError(
                f"field #{i}: stored as {s[0]!r} ({s[1]}), given as {given[i][0]!r} "
                f"({given[i][1]}); fields can only be appended"
            )


def _remove_orphans(directory: Path, man: Manifest) -> None:
    """Delete temp files and sstables the manifest does not name (written by a flush or
    compaction that crashed before its manifest save); raise next_file above every number seen."""
    live = man.live_files()
    highest = 0
    for p in directory.iterdir():
        stem = p.name.split(".")[0]
        if stem.isdigit():  # numbers of removed orphans are never reused either
            highest = max(highest, int(stem))
        if p.name.endswith(".tmp") or (p.suffix == ".sst" and p.name not in live):
            log.info("removing orphan file %s", p)
            p.unlink()
    man.next_file = max(man.next_file, highest + 1)
