"""Snapshots and file pins of an OfflineStore: `snapshot` pins the files a query reads, `release`
unpins them, `retire_files` records files a manifest write is about to stop naming, and `reap`
deletes obsolete files once nothing needs them.

Invariants: a file is deleted only when no view names it, no snapshot pins it (`_refs`) and, for a
retired file, `snapshot_grace_s` has passed since it was retired (offline/retired.py), so readers
of a listed snapshot in other engines still find it. Thread-safety: callable from any thread; the
pins, the obsolete set and `_reap_due` are GUARDED_BY the store's `_lock` (see offline/store.py),
which is held for the bookkeeping but released before the unlinks' logging and record update.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from offline.retired import reapable
from offline.source import ViewSnapshot

if TYPE_CHECKING:
    from offline.store import OfflineStore

__all__ = ["release", "reap", "retire_files", "snapshot"]

# The store's logger: operators filter on its name wherever the code lives.
log = logging.getLogger("offline.store")


def retire_files(store: OfflineStore, view: str, rel_paths: Iterable[str]) -> None:
    """Retire files of `view` (paths relative to its directory) that a manifest write is
    about to stop naming: call it BEFORE that write, holding `_io_lock` (compaction and
    retention both do). Each is deleted once no view names it, no query pins it and
    `snapshot_grace_s` has passed since (offline/retired.py)."""
    paths = sorted(set(rel_paths))
    if not paths:
        return
    now = time.time()
    store._retired.add([f"{view}/{p}" for p in paths], now)
    with store._lock:
        store._obsolete.update(store._dir / view / p for p in paths)
        store._reap_due = min(store._reap_due, now + store._options.snapshot_grace_s)


def reap(store: OfflineStore) -> None:
    """Delete obsolete files that no view names, no snapshot reads and whose grace has
    ended; cheap (one comparison) until the earliest grace period ends."""
    now = time.time()
    grace = store._options.snapshot_grace_s
    with store._lock:
        if not store._obsolete or now < store._reap_due:
            return
        live = {store._dir / n / f.path for n, v in store._views.items() for f in v.files}
        dead, due = reapable(store._obsolete, live, store._refs, store._retired, now, grace)
        store._obsolete.difference_update(dead)
        store._reap_due = due
    for path in dead:
        path.unlink(missing_ok=True)
    if dead:
        log.info("offline: deleted %d replaced files past their grace period", len(dead))
        store._retired.forget(str(p.relative_to(store._dir)) for p in dead)


def snapshot(store: OfflineStore, views: list[str]) -> dict[str, ViewSnapshot]:
    """Consistent snapshots of `views`; their files are pinned until `release`."""
    store._check_open()
    with store._lock:
        snaps = {}
        for name in dict.fromkeys(views):
            v = store._view(name)
            snaps[name] = ViewSnapshot(
                view=name,
                schema=v.schema,
                keys=v.keys,
                view_dir=store._dir / name,
                files=v.files,
                buffer=tuple(b.table for b in v.buffer),
                max_seq=v.last_seq,
            )
            for f in v.files:
                store._refs[store._dir / name / f.path] += 1
    return snaps


def release(store: OfflineStore, snaps: dict[str, ViewSnapshot]) -> None:
    with store._lock:
        for snap in snaps.values():
            for f in snap.files:
                path = snap.view_dir / f.path
                store._refs[path] -= 1
                if store._refs[path] <= 0:
                    del store._refs[path]
    reap(store)
