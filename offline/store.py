"""OfflineStore: Hive-partitioned Parquet per view, an in-memory Arrow buffer, DuckDB queries.

This module owns the write side (views, append, buffer, flush, manifest, compaction, lifecycle)
and the snapshots reads pin; the reads themselves (scans, latest rows, joins, exports) live in
`offline/reads.py`, which the store composes and its read methods delegate to.

Invariants:
- The manifest names exactly the visible Parquet files; a file is written completely (temp,
  fsync, rename, fsync dir) before the manifest names it, so a crash never exposes a partial
  file. On open, files the manifest does not name (and temp files) are deleted.
- Every query reads a snapshot: the files and buffer batches of the moment it started. Flush
  and compaction install new file lists atomically with the buffer change; files they replace
  are deleted only when no snapshot uses them.
- `durable_seq(view)` is the highest seq whose rows are all in manifest-named Parquet.
Thread-safety: one writer thread appends while any number of threads query; flush and
compaction (explicit or background) are serialized by `_io_lock`; `_lock` guards the in-memory
state and is never held during I/O other than a file deletion.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import duckdb
import pyarrow as pa

from offline._fsio import fsync_dir
from offline._view import Buffered, View
from offline.compaction import partitions_to_compact, read_partition
from offline.errors import OfflineError, SchemaMismatchError, UnknownViewError
from offline.feature_query import ExportResult, FeatureQuery
from offline.latest import LatestBuckets
from offline.manifest import (
    FileEntry,
    ViewState,
    check_and_clean,
    read_manifest,
    write_manifest,
)
from offline.names import check_identifier, literal_path
from offline.options import OfflineOptions
from offline.partition import partition_dir, split_by_day, write_part
from offline.reads import SPILL_PREFIX, Reads
from offline.schema import check_evolution, conform_batch, normalize_schema, pad_to, stored_schema
from offline.source import ViewSnapshot

log = logging.getLogger(__name__)

OFFLINE_DIR = "offline"  # <root>/offline, on-disk layout, do not change
_DUCKDB_TMP = "_duckdb_tmp"


class OfflineStore:
    """The offline (training) store of one root directory; see the module docstring."""

    def __init__(self, root: str | os.PathLike[str], options: OfflineOptions | None = None):
        self._options = options or OfflineOptions()
        self._dir = Path(root).absolute() / OFFLINE_DIR
        literal_path(str(self._dir.absolute()))  # refuse a root DuckDB cannot read literally
        self._dir.mkdir(parents=True, exist_ok=True)
        # _io_lock (outer) serializes flush, compaction and view registration; it guards the
        # manifest file. _lock (inner) guards the fields marked below.
        self._lock = threading.Lock()
        self._io_lock = threading.RLock()
        self._refs: Counter[Path] = Counter()  # GUARDED_BY(_lock): pins per live file
        self._obsolete: set[Path] = set()  # GUARDED_BY(_lock): replaced, awaiting unpin
        self._closed = False  # set once by close(); read without a lock
        self._views: dict[str, View] = {}  # GUARDED_BY(_lock), and each View's fields too
        for name, st in read_manifest(self._dir).items():
            view = View(name, st.schema, st.keys, st.durable_seq, st.files)
            view.last_seq = max([st.durable_seq] + [f.max_seq for f in st.files])
            self._views[name] = view
        check_and_clean(self._dir, {n: v.files for n, v in self._views.items()}, _DUCKDB_TMP)
        temp_root = self._dir / _DUCKDB_TMP
        for leftover in temp_root.glob(f"{SPILL_PREFIX}*"):  # spills of a crashed process
            shutil.rmtree(leftover, ignore_errors=True)
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": self._options.duckdb_memory_limit,
            "temp_directory": str(temp_root),
        }
        if self._options.duckdb_threads:
            config["threads"] = self._options.duckdb_threads
        self._con = duckdb.connect(":memory:", config=config)  # immutable; cursors per read
        self._reads = Reads(self._snapshot, self._release, self._cursor, self._options, temp_root)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if self._options.background:
            self._thread = threading.Thread(
                target=self._background, name="offline-flush", daemon=True
            )
            self._thread.start()

    # ----------------------------------------------------------------- open / close

    def close(self) -> None:
        """Flush every buffer, stop the background thread, release DuckDB. Idempotent."""
        if self._closed:
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()
        self._closed = True
        self._con.close()

    def __enter__(self) -> OfflineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise OfflineError("offline store is closed")

    # ----------------------------------------------------------------- views

    def register_view(self, view: str, schema: pa.Schema, keys: list[str]) -> None:
        """Create a view, or append features to it; anything else raises SchemaMismatchError."""
        self._check_open()
        check_identifier(view, "view")
        norm = normalize_schema(view, schema, list(keys))
        with self._io_lock:
            with self._lock:
                existing = self._views.get(view)
            if existing is not None:
                if tuple(keys) != existing.keys:
                    raise SchemaMismatchError(
                        f"view {view!r}: keys {list(keys)} differ from the registered "
                        f"{list(existing.keys)}; keys cannot change"
                    )
                check_evolution(view, existing.schema, norm)
                if existing.schema.equals(norm):
                    return
            states = self._states()
            old = states.get(view)
            states[view] = ViewState(
                norm, tuple(keys), old.durable_seq if old else 0, old.files if old else ()
            )
            write_manifest(self._dir, states, fsync=self._options.fsync)
            with self._lock:
                if existing is None:
                    self._views[view] = View(view, norm, tuple(keys))
                else:
                    existing.schema = norm
        log.info("offline: registered view %s (%d columns)", view, len(norm))

    def _view(self, view: str) -> View:
        v = self._views.get(view)
        if v is None:
            raise UnknownViewError(view)
        return v

    def _states(self) -> dict[str, ViewState]:
        with self._lock:
            return {name: v.state() for name, v in self._views.items()}

    # ----------------------------------------------------------------- writes

    def append(self, view: str, batch: pa.RecordBatch | pa.Table, seq: int) -> None:
        """Buffer one committed batch (`seq` > every earlier seq of the view).

        A seq at or below `durable_seq(view)` is already in Parquet (a replay) and is ignored.
        """
        self._check_open()
        with self._lock:
            v = self._view(view)
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
        with self._lock:
            v.buffer.append(Buffered(seq, table, now))
            v.buffer_rows += table.num_rows
            v.last_seq = seq
            rows, oldest = v.buffer_rows, v.buffer[0].appended_at
        opts = self._options
        full = rows >= opts.buffer_rows
        old = now - oldest >= opts.buffer_age_s
        if opts.background and rows < opts.buffer_rows * opts.backpressure_factor:
            if full:
                self._wake.set()
        elif full or old:
            self.flush(view)

    def flush(self, view: str | None = None) -> None:
        """Write buffered rows to Parquet (one file per touched date) and record durable_seq."""
        with self._io_lock:
            names = [view] if view is not None else sorted(self._views)
            for name in names:
                with self._lock:
                    v = self._view(name)
                self._flush_view(v)

    def _flush_view(self, v: View) -> None:
        with self._lock:
            batches = list(v.buffer)
            schema = stored_schema(v.schema)
        if not batches:
            return
        started = time.perf_counter()
        table = pa.concat_tables([pad_to(b.table, schema) for b in batches])
        view_dir = self._dir / v.name
        new_dirs = not view_dir.exists()
        taken = {f.path for f in v.files}
        parts = split_by_day(table, v.keys)
        new_dirs = new_dirs or any(not (view_dir / partition_dir(d)).exists() for d, _ in parts)
        # Partitions are independent files: encode and compress them in parallel (pyarrow
        # releases the GIL); each is still published atomically on its own.
        with ThreadPoolExecutor(self._options.flush_threads) as pool:
            entries = list(pool.map(lambda dp: self._write(view_dir, dp[0], dp[1], taken), parts))
        if new_dirs and self._options.fsync:
            fsync_dir(view_dir)
            fsync_dir(self._dir)
        states = self._states()
        durable = batches[-1].seq
        states[v.name] = ViewState(v.schema, v.keys, durable, v.files + tuple(entries))
        write_manifest(self._dir, states, fsync=self._options.fsync)
        with self._lock:
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

    def _write(self, view_dir: Path, day: int, table: pa.Table, taken: set[str]) -> FileEntry:
        o = self._options
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

    def compact(self, view: str | None = None, min_files: int = 2) -> None:
        """Merge each partition holding >= `min_files` files into one file, atomically.

        Queries running meanwhile keep reading the files they started with; those are deleted
        once released. Query results are unchanged (the same rows, `_seq` and `_row` kept).
        """
        self._check_open()
        with self._io_lock:
            names = [view] if view is not None else sorted(self._views)
            for name in names:
                with self._lock:
                    v = self._view(name)
                self._compact_view(v, max(2, min_files))

    def _compact_view(self, v: View, min_files: int) -> None:
        view_dir = self._dir / v.name
        schema = stored_schema(v.schema)
        for day, group in partitions_to_compact(v.files, min_files):
            started = time.perf_counter()
            rows = read_partition(v.name, view_dir, day, group, schema, v.keys)
            merged = self._write(view_dir, day, rows, {f.path for f in v.files})
            replaced = {f.path for f in group}
            files = tuple(f for f in v.files if f.path not in replaced) + (merged,)
            states = self._states()
            states[v.name] = ViewState(v.schema, v.keys, v.durable_seq, files)
            write_manifest(self._dir, states, fsync=self._options.fsync)
            with self._lock:
                v.files = files
                self._obsolete.update(view_dir / p for p in replaced)
            self._reap()
            log.info(
                "offline: compacted %d files of %s/%s (%d rows) in %.3fs",
                len(group),
                v.name,
                partition_dir(day),
                merged.rows,
                time.perf_counter() - started,
            )

    def _reap(self) -> None:
        """Delete replaced files that no snapshot reads any more."""
        with self._lock:
            dead = [p for p in self._obsolete if self._refs[p] == 0]
            self._obsolete.difference_update(dead)
        for path in dead:
            path.unlink(missing_ok=True)

    def _background(self) -> None:
        opts = self._options
        while not self._stop.is_set():
            self._wake.wait(opts.background_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                now = time.monotonic()
                with self._lock:
                    due = [
                        name
                        for name, v in self._views.items()
                        if v.due(now, opts.buffer_rows, opts.buffer_age_s)
                    ]
                for name in due:
                    self.flush(name)
                with self._io_lock:
                    for name in sorted(self._views):
                        self._compact_view(self._views[name], opts.compact_min_files)
            except (OfflineError, OSError, pa.ArrowException):
                log.exception("offline: background flush/compaction failed; will retry")

    # ----------------------------------------------------------------- snapshots

    def _snapshot(self, views: list[str]) -> dict[str, ViewSnapshot]:
        """Consistent snapshots of `views`; their files are pinned until `_release`."""
        self._check_open()
        with self._lock:
            snaps = {}
            for name in dict.fromkeys(views):
                v = self._view(name)
                snaps[name] = ViewSnapshot(
                    view=name,
                    schema=v.schema,
                    keys=v.keys,
                    view_dir=self._dir / name,
                    files=v.files,
                    buffer=tuple(b.table for b in v.buffer),
                    max_seq=v.last_seq,
                )
                for f in v.files:
                    self._refs[self._dir / name / f.path] += 1
        return snaps

    def _release(self, snaps: dict[str, ViewSnapshot]) -> None:
        with self._lock:
            for snap in snaps.values():
                for f in snap.files:
                    path = snap.view_dir / f.path
                    self._refs[path] -= 1
                    if self._refs[path] <= 0:
                        del self._refs[path]
        self._reap()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        self._check_open()
        return self._con.cursor()

    # ----------------------------------------------------------------- reads

    def scan(
        self,
        view: str,
        start: object = None,
        end: object = None,
        columns: list[str] | None = None,
        as_of_seq: int | None = None,
    ) -> pa.RecordBatchReader:
        """Rows with `start <= event_timestamp < end` (None: unbounded) and `_seq <= as_of_seq`.

        Reads only the partitions the range can touch. `columns` defaults to every stored
        column (user schema, `_seq`, `_row`). Rows come in no particular order.
        """
        return self._reads.scan(view, start, end, columns, as_of_seq)

    def latest_per_entity(self, view: str, as_of_seq: int | None = None) -> pa.Table:
        """One row per entity, the latest by (event_ts, created_ts, _seq, _row), sorted by key.

        Columns: keys, event_timestamp, created_timestamp, _seq, features. The result is held
        in memory (one row per entity); DuckDB's memory is bounded by one bucket of
        `latest_buckets`. For views too large to hold, use `latest_buckets`.
        """
        return self._reads.latest_per_entity(view, as_of_seq)

    def latest_buckets(
        self, view: str, entities_per_bucket: int | None = None, as_of_seq: int | None = None
    ) -> AbstractContextManager[LatestBuckets]:
        """The latest row per entity in buckets of about `entities_per_bucket` entities
        (default `OfflineOptions.latest_bucket_entities`), for `with`: memory bounded by one
        bucket. The view's rows are spilled into the DuckDB temp area, removed on exit.
        """
        per = entities_per_bucket or self._options.latest_bucket_entities
        return self._reads.latest_buckets(view, per, as_of_seq)

    def get_historical(
        self,
        entities: pa.Table | str | os.PathLike[str],
        queries: list[FeatureQuery],
        as_of_seq: int | None = None,
        full_feature_names: bool = False,
    ) -> pa.Table:
        """Point-in-time join: the entity table, unchanged and in order, plus feature columns.

        For each query, each entity row gets the latest feature row (version order) with
        `entity_ts - ttl <= event_timestamp <= entity_ts`, or nulls. See `pit_join`.
        """
        return self._reads.get_historical(entities, queries, as_of_seq, full_feature_names)

    def export(
        self,
        entities: pa.Table | str | os.PathLike[str],
        queries: list[FeatureQuery],
        out_path: str | os.PathLike[str],
        as_of_seq: int | None = None,
        full_feature_names: bool = False,
    ) -> ExportResult:
        """Stream the point-in-time join to a Parquet file through DuckDB `COPY ... TO`.

        Memory stays within the DuckDB memory limit (it spills beyond it); entity rows from a
        Parquet path never enter Python. The file appears atomically (temp + rename).
        `seq` is the sequence the export reflects: `as_of_seq`, or the highest seq appended.
        """
        return self._reads.export(entities, queries, out_path, as_of_seq, full_feature_names)

    def durable_seq(self, view: str) -> int:
        with self._lock:
            return self._view(view).durable_seq

    def max_seq(self) -> int:
        with self._lock:
            return max((v.last_seq for v in self._views.values()), default=0)

    def views(self) -> list[str]:
        with self._lock:
            return sorted(self._views)

    def schema(self, view: str) -> pa.Schema:
        """The view's user schema (keys, timestamps, features), normalized."""
        with self._lock:
            return self._view(view).schema

    def stats(self) -> dict:
        """{view: {"files", "bytes", "buffer_rows", "durable_seq", "partitions"}}."""
        with self._lock:
            return {
                name: {
                    "files": len(v.files),
                    "bytes": sum(f.bytes for f in v.files),
                    "buffer_rows": v.buffer_rows,
                    "durable_seq": v.durable_seq,
                    "partitions": len({f.day for f in v.files}),
                }
                for name, v in sorted(self._views.items())
            }
