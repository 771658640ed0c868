"""Maintenance of an OfflineStore's files: compaction (merge a partition's files into one),
deletes (rewrite the files holding given entities), retention (drop expired partitions) and the
background thread that flushes, drops, reaps and compacts.

Invariants: each change writes its new files completely, retires the files it replaces
(offline/file_pins.py) BEFORE the manifest write that stops naming them, then installs the new file
list under `_lock`; queries keep reading the files of their snapshot. Thread-safety: every change
holds the store's `_io_lock` (serialized with flushes and view registration); `_lock` is taken only
around in-memory state, never across I/O other than a file deletion.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import pyarrow as pa

from offline import file_pins, flusher
from offline._view import View
from offline.compaction import partitions_to_compact, read_partition
from offline.errors import OfflineError
from offline.manifest import ViewState, write_manifest
from offline.partition import partition_dir
from offline.retention import expired_files, first_retained_day
from offline.schema import stored_schema

if TYPE_CHECKING:
    from offline.store import OfflineStore

__all__ = [
    "background",
    "compact",
    "compact_view",
    "drop_expired",
    "drop_view",
    "set_retention",
]

# The store's logger: operators filter on its name wherever the code lives.
log = logging.getLogger("offline.store")


def compact(store: OfflineStore, view: str | None = None, min_files: int = 2) -> None:
    """Merge each partition holding >= `min_files` files into one file, atomically.

    Queries running meanwhile keep reading the files they started with; those are deleted
    once released. Query results are unchanged (the same rows, `_seq` and `_row` kept).
    """
    store._check_open()
    with store._io_lock:
        names = [view] if view is not None else sorted(store._views)
        for name in names:
            with store._lock:
                v = store._view(name)
            compact_view(store, v, max(2, min_files))


def compact_view(store: OfflineStore, v: View, min_files: int) -> None:
    view_dir = store._dir / v.name
    schema = stored_schema(v.schema)
    for day, group in partitions_to_compact(v.files, min_files):
        with store._lock:
            staged = any(view_dir / f.path in store._staged for f in group)
        if staged:
            continue  # a staged delete rewrote a file of it: compacted after it commits
        started = time.perf_counter()
        rows = read_partition(v.name, view_dir, day, group, schema, v.keys)
        merged = flusher.write_file(store, view_dir, day, rows, {f.path for f in v.files})
        replaced = {f.path for f in group}
        files = tuple(f for f in v.files if f.path not in replaced) + (merged,)
        file_pins.retire_files(store, v.name, replaced)
        states = store._states()
        states[v.name] = ViewState(v.schema, v.keys, v.durable_seq, files)
        write_manifest(store._dir, states, fsync=store._options.fsync)
        with store._lock:
            v.files = files
            store._obsolete.update(view_dir / p for p in replaced)
        file_pins.reap(store)
        log.info(
            "offline: compacted %d files of %s/%s (%d rows) in %.3fs",
            len(group),
            v.name,
            partition_dir(day),
            merged.rows,
            time.perf_counter() - started,
        )


def background(store: OfflineStore) -> None:
    opts = store._options
    while not store._stop.is_set():
        store._wake.wait(opts.background_interval_s)
        store._wake.clear()
        if store._stop.is_set():
            return
        try:
            now = time.monotonic()
            with store._lock:
                due = [
                    name
                    for name, v in store._views.items()
                    if v.due(now, opts.buffer_rows, opts.buffer_age_s)
                ]
            for name in due:
                store.flush(name)
            store.drop_expired()
            file_pins.reap(store)
            with store._io_lock:
                for name in sorted(store._views):
                    compact_view(store, store._views[name], opts.compact_min_files)
        except (OfflineError, OSError, pa.ArrowException):
            log.exception("offline: background flush/compaction failed; will retry")


def set_retention(store: OfflineStore, view: str, retention_ns: int) -> None:
    """Keep only partitions holding events at or after `now - retention_ns` (0: keep all);
    expired ones are dropped by the background thread and by `drop_expired`."""
    with store._lock:
        store._view(view)
    store._retention.set(view, retention_ns)


def drop_expired(store: OfflineStore, now_ns: int | None = None) -> dict[str, dict[str, int]]:
    """Drop, atomically per view, the partitions lying entirely before `now - retention`
    (`now_ns`, default the wall clock): the retention record, then the manifest, first;
    the files are retired like compaction's. {view: {"partitions", "files", "rows",
    "bytes"}} of the views that dropped."""
    store._check_open()
    now = time.time_ns() if now_ns is None else now_ns
    out: dict[str, dict[str, int]] = {}
    with store._io_lock:
        for name, retention in store._retention.items():
            with store._lock:
                v = store._views.get(name)
            dropped = drop_view(store, v, now - retention) if v is not None else None
            if dropped:
                out[name] = dropped
    return out


def drop_view(store: OfflineStore, v: View, cutoff_ns: int) -> dict[str, int] | None:
    """Caller holds `_io_lock`: drop `v`'s partitions entirely before `cutoff_ns`."""
    gone = expired_files(v.files, cutoff_ns)
    if not gone:
        return None
    started = time.perf_counter()
    store._retention.raise_floor(v.name, first_retained_day(cutoff_ns))
    dropped = {f.path for f in gone}
    files = tuple(f for f in v.files if f.path not in dropped)
    file_pins.retire_files(store, v.name, dropped)
    states = store._states()
    states[v.name] = ViewState(v.schema, v.keys, v.durable_seq, files)
    write_manifest(store._dir, states, fsync=store._options.fsync)
    with store._lock:
        v.files = files
    file_pins.reap(store)
    report = {
        "partitions": len({f.day for f in gone}),
        "files": len(gone),
        "rows": sum(f.rows for f in gone),
        "bytes": sum(f.bytes for f in gone),
    }
    log.info(
        "offline: retention dropped %d partitions of %s (%d rows) in %.3fs",
        report["partitions"],
        v.name,
        report["rows"],
        time.perf_counter() - started,
    )
    return report
