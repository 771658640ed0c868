"""The write side of an OfflineStore: `append` into a view's in-memory buffer, and `flush` of the
buffer into Parquet (one file per touched date) with the manifest write that publishes it.

Invariants: a file is written completely (temp, fsync, rename) before the manifest names it;
`durable_seq` moves only with the manifest write naming the rows up to it, and the flushed batches
leave the buffer in the same `_lock` section that installs the new file list, so a snapshot sees
each row exactly once. Thread-safety: one appending thread; flushes hold the store's `_io_lock`;
the store's fields marked GUARDED_BY(_lock) in offline/store.py are touched only under `_lock`,
never held across the Parquet writes.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from offline._fsio import fsync_dir
from offline._view import Buffered, View
from offline.errors import OfflineError
from offline.manifest import FileEntry, ViewState, write_manifest
from offline.partition import partition_dir, split_by_day, write_part
from offline.schema import conform_batch, pad_to, stored_schema

if TYPE_CHECKING:
    from offline.store import OfflineStore

__all__ = ["append", "flush", "flush_view", "write_file"]

# The store's logger: operators filter on its name wherever the code lives.
log = logging.getLogger("offline.store")


def append(store: OfflineStore, view: str, batch: pa.RecordBatch | pa.Table, seq: int) -> None:
    """Buffer one committed batch (`seq` > every earlier seq of the view).

    A seq at or below `durable_seq(view)` is already in Parquet (a replay) and is ignored.
    """
    store._check_open()
    with store._lock:
        v = store._view(view)
        schema, keys, durable, last = v.schema, v.keys, v.durable_seq, v.last_seq
    if seq <= durable:
        log.debug("offline: view %s seq %d already durable, ignored", view, seq)
        return
    if seq <= last:
        raise OfflineError(
            f"view {view!r}: seq {seq} is not above the last appended seq {last}; "
            "batches must be appended in commit order"
        )
    table = conform_batch(view, schema, keys, batch, seq)
    if table.num_rows == 0:
        return
    now = time.monotonic()
    with store._lock:
        v.buffer.append(Buffered(seq, table, now))
        v.buffer_rows += table.num_rows
        v.last_seq = seq
        rows, oldest = v.buffer_rows, v.buffer[0].appended_at
    opts = store._options
    full = rows >= opts.buffer_rows
    old = now - oldest >= opts.buffer_age_s
    if opts.background and rows < opts.buffer_rows * opts.backpressure_factor:
        if full:
            store._wake.set()
    elif full or old:
        store.flush(view)


def flush(store: OfflineStore, view: str | None = None) -> None:
    """Write buffered rows to Parquet (one file per touched date) and record durable_seq."""
    with store._io_lock:
        names = [view] if view is not None else sorted(store._views)
        for name in names:
            with store._lock:
                v = store._view(name)
            flush_view(store, v)


def flush_view(store: OfflineStore, v: View) -> None:
    with store._lock:
        batches = list(v.buffer)
        schema = stored_schema(v.schema)
    if not batches:
        return
    started = time.perf_counter()
    table = pa.concat_tables([pad_to(b.table, schema) for b in batches])
    view_dir = store._dir / v.name
    new_dirs = not view_dir.exists()
    taken = {f.path for f in v.files}
    parts = split_by_day(table, v.keys)
    new_dirs = new_dirs or any(not (view_dir / partition_dir(d)).exists() for d, _ in parts)
    # Partitions are independent files: encode and compress them in parallel (pyarrow
    # releases the GIL); each is still published atomically on its own.
    with ThreadPoolExecutor(store._options.flush_threads) as pool:
        entries = list(pool.map(lambda dp: write_file(store, view_dir, dp[0], dp[1], taken), parts))
    if new_dirs and store._options.fsync:
        fsync_dir(view_dir)
        fsync_dir(store._dir)
    states = store._states()
    durable = batches[-1].seq
    states[v.name] = ViewState(v.schema, v.keys, durable, v.files + tuple(entries))
    write_manifest(store._dir, states, fsync=store._options.fsync)
    with store._lock:
        v.files = v.files + tuple(entries)
        v.durable_seq = durable
        del v.buffer[: len(batches)]
        v.buffer_rows -= table.num_rows
    log.info(
        "offline: flushed %d rows of %s into %d files up to seq %d in %.3fs",
        table.num_rows,
        v.name,
        len(entries),
        durable,
        time.perf_counter() - started,
    )


def write_file(
    store: OfflineStore, view_dir: Path, day: int, table: pa.Table, taken: set[str]
) -> FileEntry:
    o = store._options
    return write_part(
        view_dir,
        day,
        table,
        compression=o.compression,
        compression_level=o.compression_level,
        row_group_rows=o.row_group_rows,
        fsync=o.fsync,
        taken=taken,
    )
