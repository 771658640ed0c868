"""Two-phase deletes of an OfflineStore: stage the rewrite of the files holding some entities off
the writer's path, then commit it, in seq order, with one manifest write.

- `stage(store, view, entities)` pins the view's files, finds those holding rows of `entities`
  and writes each one's rewrite without those rows as a part file no manifest names, then
  flushes the view's buffer. Appends, flushes, reads and retention go on meanwhile; compaction
  leaves alone the partitions holding a staged file (`OfflineStore._staged`).
- `commit(store, view, entities, seq, staged)` holds `_io_lock`: it flushes the buffer, rewrites
  the files named since staging (flushed or merged after it) that hold the entities, swaps each
  staged rewrite for its original when the manifest still names that original, and publishes
  the new file list with durable_seq = `seq` in one manifest write. The replaced files are
  deleted once no query pins them (no grace period: they hold deleted data); staged rewrites
  whose original is gone (merged by compaction, dropped by retention) are deleted unused.
  `staged=None` does it all at once, inside the commit. Retired files (replaced by compaction
  or retention, kept `snapshot_grace_s` for listed snapshots) that hold the entities lose their
  grace and are deleted too, once no query of this process pins them.
- `discard(store, staged)`: the delete was never sequenced; delete its staged files.

Every row of a staged file's original was committed before the delete (it existed before the
delete was sequenced), so the rewrite removes every row of the entities, whatever its seq.
Crash safety: a staged file is an unnamed part file until the manifest write (the commit point)
names it, and unnamed part files are deleted on reopen (offline/manifest.py `check_and_clean`);
the files the commit replaces are deleted after it. Readers see each entity's rows all (before
the commit) or none (after).
Thread-safety: `stage` and `discard` run on any thread, `commit` on the writer's, in seq order;
`stage` takes `_io_lock` only for the flush at its end (its files are named
`part-<first>-<last>-d<n>.parquet`, a name flushes and compaction never pick), and `_lock` only
around the store's in-memory fields.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from offline import file_pins, flusher
from offline._fsio import publish
from offline.deletes import affected_files, files_holding, rewrite_without
from offline.errors import OfflineError
from offline.manifest import FileEntry, ViewState, write_manifest
from offline.names import SEQ_COLUMN, literal_path
from offline.schema import stored_schema

if TYPE_CHECKING:
    from offline.store import OfflineStore

__all__ = ["StagedDelete", "commit", "discard", "stage"]

# The store's logger: operators filter on its name wherever the code lives.
log = logging.getLogger("offline.store")
_NAMES = threading.Lock()  # the choice and creation of staged file names


@dataclass
class StagedDelete:
    """The staged rewrite of one view's files for deleting `entities` (one row per entity, the
    view's join-key columns). `covered`: the files staging examined (relative paths); `swaps`:
    original -> its rewrite (None: no row remains); `found`: per entity, whether a covered file
    holds it. Owned by the caller between `stage` and `commit`/`discard`."""

    view: str
    entities: pa.Table
    covered: frozenset[str]
    swaps: dict[str, FileEntry | None] = field(default_factory=dict)
    found: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    retired: list[Path] = field(default_factory=list)  # retired files holding the entities
    checked: set[Path] = field(default_factory=set)  # the retired files staging examined
    closed: bool = False  # committed or discarded

    def staged_paths(self, view_dir: Path) -> set[Path]:
        return {view_dir / p for p in self.swaps}


def stage(store: OfflineStore, view: str, entities: pa.Table) -> StagedDelete:
    """Write the rewrites of `view`'s files holding rows of `entities` (unpublished) and flush
    the view's buffer. The caller commits the result once the delete is sequenced, or
    discards it."""
    snaps = file_pins.snapshot(store, [view])  # checks open and the view; pins the files
    snap = snaps[view]
    ent = entities.select(list(snap.keys))
    staged = StagedDelete(view, ent, frozenset(f.path for f in snap.files))
    started = time.perf_counter()
    try:
        con = store._cursor()
        try:
            hit, staged.found = affected_files(con, snap.view_dir, snap.files, ent, snap.keys)
            staged.checked = set(_retired_files(store, snap.view_dir))
            staged.retired = _holding(store, con, list(staged.checked), ent, snap.keys)
            with store._lock:
                store._staged.update(snap.view_dir / f.path for f in hit)
            staged.swaps = dict.fromkeys((f.path for f in hit), None)
            schema = stored_schema(snap.schema)
            for entry in hit:
                rows = rewrite_without(con, view, snap.view_dir, entry, schema, snap.keys, ent)
                if rows is not None:
                    staged.swaps[entry.path] = _write_staged(store, snap.view_dir, entry, rows)
        finally:
            con.close()
        store.flush(view)
    except BaseException:
        discard(store, staged)
        raise
    finally:
        file_pins.release(store, snaps)
    log.info(
        "offline: staged the delete of %d entities of %s: %d of %d files rewritten in %.3fs",
        int(staged.found.sum()),
        view,
        len(staged.swaps),
        len(staged.covered),
        time.perf_counter() - started,
    )
    return staged


def _write_staged(
    store: OfflineStore, view_dir: Path, entry: FileEntry, rows: pa.Table
) -> FileEntry:
    """Publish `rows` (the rewrite of `entry`) as an unnamed part file of its partition, under
    a name no flush or compaction picks (they never use the `-d` suffix), so that staging
    needs no `_io_lock`; `_NAMES` serializes the choice between stagings."""
    o = store._options
    seqs = rows.column(SEQ_COLUMN)
    lo, hi = int(pc.min(seqs).as_py()), int(pc.max(seqs).as_py())
    part = entry.path.split("/")[0]
    with _NAMES:
        n = 1
        while (view_dir / part / f"part-{lo}-{hi}-d{n}.parquet").exists():
            n += 1
        rel = f"{part}/part-{lo}-{hi}-d{n}.parquet"

        def write(temp: Path) -> None:
            pq.write_table(
                rows,
                temp,
                compression=o.compression,
                compression_level=o.compression_level,
                row_group_size=o.row_group_rows,
            )

        publish(view_dir / rel, write, fsync=o.fsync)
    return FileEntry(
        path=rel,
        day=entry.day,
        rows=rows.num_rows,
        bytes=(view_dir / rel).stat().st_size,
        min_seq=lo,
        max_seq=hi,
        columns=tuple(rows.column_names),
    )


def _retired_files(store: OfflineStore, view_dir: Path) -> list[Path]:
    """The view's retired files: replaced, kept on disk for their grace period."""
    with store._lock:
        return [
            p
            for p in store._obsolete
            if p.parent.parent == view_dir
            and store._retired.retired_at(str(p.relative_to(store._dir))) is not None
        ]


def _holding(
    store: OfflineStore,
    con: duckdb.DuckDBPyConnection,
    paths: list[Path],
    entities: pa.Table,
    keys: tuple[str, ...],
) -> list[Path]:
    """Those of `paths` (files of the view) holding rows of `entities`; pinned while read, so
    that no reap removes them meanwhile."""
    with store._lock:
        paths = [p for p in paths if p.is_file()]
        for p in paths:
            store._refs[p] += 1
    try:
        names, _ = files_holding(con, [literal_path(str(p)) for p in paths], entities, keys)
    finally:
        with store._lock:
            for p in paths:
                store._refs[p] -= 1
                if store._refs[p] <= 0:
                    del store._refs[p]
    return [p for p in paths if literal_path(str(p)) in names]


def _retired_now(
    store: OfflineStore,
    con: duckdb.DuckDBPyConnection,
    view_dir: Path,
    entities: pa.Table,
    keys: tuple[str, ...],
    staged: StagedDelete | None,
) -> list[Path]:
    """The view's retired files holding rows of `entities`, reading only those `staged` did
    not examine (retired since staging, and not staged)."""
    now = _retired_files(store, view_dir)
    if staged is None:
        return _holding(store, con, now, entities, keys)
    known = set(staged.retired) | staged.staged_paths(view_dir)
    seen = staged.checked | {view_dir / p for p in staged.covered}
    unseen = [p for p in now if p not in known and p not in seen]
    return [p for p in now if p in known] + _holding(store, con, unseen, entities, keys)


def discard(store: OfflineStore, staged: StagedDelete) -> None:
    """Delete the staged files of a delete that will not be committed. Idempotent."""
    if staged.closed:
        return
    staged.closed = True
    view_dir = store._dir / staged.view
    with store._lock:
        store._staged.difference_update(staged.staged_paths(view_dir))
    for new in staged.swaps.values():
        if new is not None:
            (view_dir / new.path).unlink(missing_ok=True)


def commit(
    store: OfflineStore, view: str, entities: pa.Table, seq: int, staged: StagedDelete | None
) -> np.ndarray:
    """Remove every row of `entities` committed before `seq` (see the module docstring); per
    entity, whether the view held a row of it. A `seq` at or below durable_seq (a replay of a
    delete already applied) changes nothing. `staged`: from `stage` with the same entities."""
    store._check_open()
    if staged is not None and staged.view != view:  # the view was reset since: stage again
        discard(store, staged)
        staged = None
    with store._io_lock:
        with store._lock:
            v = store._view(view)
        if seq <= v.durable_seq:
            if staged is not None:
                discard(store, staged)
            return np.zeros(entities.num_rows, dtype=bool)
        if seq <= v.last_seq:
            raise OfflineError(
                f"view {view!r}: delete seq {seq} is not above the last appended seq {v.last_seq}"
            )
        if staged is not None and (staged.closed or staged.entities.num_rows != entities.num_rows):
            raise OfflineError(f"view {view!r}: the staged delete does not match this delete")
        started = time.perf_counter()
        flusher.flush_view(store, v)
        view_dir = store._dir / v.name
        ent = entities.select(list(v.keys))
        covered = staged.covered if staged is not None else frozenset()
        fresh = tuple(f for f in v.files if f.path not in covered)
        taken = {f.path for f in v.files}
        added: list[FileEntry] = []
        retired: list[Path] = []
        con = store._cursor()
        try:
            hit, found = affected_files(con, view_dir, fresh, ent, v.keys)
            retired = _retired_now(store, con, view_dir, ent, v.keys, staged)
            schema = stored_schema(v.schema)
            for entry in hit:
                rows = rewrite_without(con, v.name, view_dir, entry, schema, v.keys, ent)
                if rows is not None:
                    added.append(flusher.write_file(store, view_dir, entry.day, rows, taken))
        finally:
            con.close()
        replaced = {f.path for f in hit}
        unused: list[Path] = []
        if staged is not None:
            found = found | staged.found
            for old, new in staged.swaps.items():
                if old in taken:
                    replaced.add(old)
                    if new is not None:
                        added.append(new)
                elif new is not None:
                    unused.append(view_dir / new.path)
        files = tuple(f for f in v.files if f.path not in replaced) + tuple(added)
        states = store._states()
        states[v.name] = ViewState(v.schema, v.keys, seq, files)
        write_manifest(store._dir, states, fsync=store._options.fsync)
        with store._lock:
            v.files = files
            v.durable_seq = seq
            v.last_seq = max(v.last_seq, seq)
            store._obsolete.update(view_dir / p for p in replaced)
            store._obsolete.update(unused)
            if staged is not None:
                staged.closed = True
                store._staged.difference_update(staged.staged_paths(view_dir))
            retired = [p for p in retired if p in store._obsolete]
            store._reap_due = 0.0  # reap now, whatever grace others wait for
        # Retired files (kept for the snapshot grace period) that hold the entities go now: a
        # listed snapshot taken before the delete cannot be read any more, as an export
        # pinned before it (as_of_seq) is refused.
        if retired:
            store._retired.forget(str(p.relative_to(store._dir)) for p in retired)
        file_pins.reap(store)
        log.info(
            "offline: deleted %d of %d entities of %s at seq %d (%d files replaced, %d "
            "rewritten at commit) in %.3fs",
            int(found.sum()),
            len(found),
            v.name,
            seq,
            len(replaced),
            len(hit),
            time.perf_counter() - started,
        )
        return found
