"""OfflineStore: Hive-partitioned Parquet per view, an in-memory Arrow buffer, DuckDB queries.

This module owns the store's state (views, buffers, pins, locks), view registration and the
lifecycle, and is the table of contents of its methods: the write side (append, flush) lives in
`offline/flusher.py`, compaction, retention and the background thread in `offline/maintenance.py`,
deletes in `offline/delete_stage.py`, snapshots and file pins in `offline/file_pins.py`, and the
reads (scans, latest rows, joins, exports) in `offline/reads.py`, which the store composes.

Invariants:
- The manifest names exactly the visible Parquet files; a file is written completely (temp,
  fsync, rename, fsync dir) before the manifest names it, so a crash never exposes a partial
  file. On open, files the manifest does not name (and temp files) are deleted.
- Every query reads a snapshot: the files and buffer batches of the moment it started. Flush
  and compaction install new file lists atomically with the buffer change; files they replace
  are deleted only when no snapshot uses them, and files compaction or retention replaces
  (`file_pins.retire_files`, recorded in `retired.json`) only `snapshot_grace_s` after that, for
  readers of a listed snapshot (`snapshot_files`) in other engines; reopen keeps those too.
- `durable_seq(view)` is the highest seq whose rows are all in manifest-named Parquet.
Thread-safety: one writer thread appends while any number of threads query; flush and
compaction (explicit or background) are serialized by `_io_lock`; `_lock` guards the in-memory
state and is never held during I/O other than a file deletion.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
import time
from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from offline import delete_stage, file_pins, flusher, maintenance
from offline._view import View
from offline.errors import OfflineError, SchemaMismatchError, UnknownViewError, query_error
from offline.feature_query import ExportResult, FeatureQuery
from offline.latest import LatestBuckets
from offline.manifest import (
    ViewState,
    check_and_clean,
    read_manifest,
    write_manifest,
)
from offline.names import check_identifier, literal_path
from offline.options import OfflineOptions
from offline.reads import SPILL_PREFIX, Reads
from offline.retention import RetentionPolicy, count_before
from offline.retired import RetiredFiles
from offline.schema import check_evolution, normalize_schema
from offline.snapshot_files import describe_snapshot
from offline.timestamps import scalar_to_ns

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
        # GUARDED_BY(_lock): files a staged delete rewrote (offline/delete_stage.py), which
        # compaction leaves alone until the delete commits or is discarded
        self._staged: set[Path] = set()
        self._closed = False  # set once by close(); read without a lock
        self._views: dict[str, View] = {}  # GUARDED_BY(_lock), and each View's fields too
        for name, st in read_manifest(self._dir).items():
            view = View(name, st.schema, st.keys, st.durable_seq, st.files)
            view.last_seq = max([st.durable_seq] + [f.max_seq for f in st.files])
            self._views[name] = view
        # Replaced files within their grace period stay: a listed snapshot may name them.
        self._retired = RetiredFiles(self._dir, fsync=self._options.fsync)
        self._reap_due = 0.0  # GUARDED_BY(_lock): no retired file's grace ends before this
        named = {n: v.files for n, v in self._views.items()}
        keep = self._retired.reopen(self._dir, named, self._options.snapshot_grace_s)
        check_and_clean(self._dir, named, _DUCKDB_TMP, keep)
        self._obsolete.update(self._dir / p for p in keep)
        self._retention = RetentionPolicy(self._dir, self._options.fsync)
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
        pins = (
            functools.partial(file_pins.snapshot, self),
            functools.partial(file_pins.release, self),
        )
        self._reads = Reads(*pins, self._cursor, self._options, temp_root)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if self._options.background:
            self._thread = threading.Thread(
                target=functools.partial(maintenance.background, self),
                name="offline-flush",
                daemon=True,
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
        """Buffer one committed batch (`seq` > every earlier seq of the view); a seq at or below
        `durable_seq(view)` is already in Parquet (a replay) and is ignored."""
        flusher.append(self, view, batch, seq)

    def flush(self, view: str | None = None) -> None:
        """Write buffered rows to Parquet (one file per touched date) and record durable_seq."""
        flusher.flush(self, view)

    def compact(self, view: str | None = None, min_files: int = 2) -> None:
        """Merge each partition holding >= `min_files` files into one file, atomically; running
        queries keep their files until released; results unchanged (`_seq`, `_row` kept)."""
        maintenance.compact(self, view, min_files)

    def delete(
        self,
        view: str,
        entities: pa.Table,
        seq: int,
        staged: delete_stage.StagedDelete | None = None,
    ) -> np.ndarray:
        """Remove every row of `entities` (the view's join-key columns, unique rows) committed
        before `seq`, durably, with one manifest write (offline/delete_stage.py `commit`);
        per entity, whether the view held a row of it. A replay (`seq` <= durable_seq) changes
        nothing. `staged`: `prepare_delete` of the same entities (only files written since are
        rewritten here)."""
        return delete_stage.commit(self, view, entities, seq, staged)

    def prepare_delete(self, view: str, entities: pa.Table) -> delete_stage.StagedDelete:
        """Stage a delete before it is sequenced (unpublished rewrites, off the writer's path)."""
        return delete_stage.stage(self, view, entities)

    def discard_delete(self, staged: delete_stage.StagedDelete) -> None:
        """Delete the files of a staged delete that will not be committed. Idempotent."""
        delete_stage.discard(self, staged)

    # ----------------------------------------------------------------- reads

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        self._check_open()
        return self._con.cursor()

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
        null_before: dict[str, int] | None = None,
    ) -> pa.Table:
        """Point-in-time join: the entity table, unchanged and in order, plus feature columns.

        For each query, each entity row gets the latest feature row (version order) with
        `entity_ts - ttl <= event_timestamp <= entity_ts`, or nulls. See `pit_join`.
        `null_before` ({view: ns}): entity rows before a view's cutoff read null for its
        features (outside retention; see offline/retention.py).
        """
        return self._reads.get_historical(
            entities, queries, as_of_seq, full_feature_names, null_before
        )

    def export(
        self,
        entities: pa.Table | str | os.PathLike[str],
        queries: list[FeatureQuery],
        out_path: str | os.PathLike[str],
        as_of_seq: int | None = None,
        full_feature_names: bool = False,
        null_before: dict[str, int] | None = None,
    ) -> ExportResult:
        """Stream the point-in-time join to a Parquet file through DuckDB `COPY ... TO`.

        Memory stays within the DuckDB memory limit (it spills beyond it); entity rows from a
        Parquet path never enter Python. The file appears atomically (temp + rename).
        `seq` is the sequence the export reflects: `as_of_seq`, or the highest seq appended.
        `null_before`: as in `get_historical`.
        """
        return self._reads.export(
            entities, queries, out_path, as_of_seq, full_feature_names, null_before
        )

    def export_as_of(
        self,
        queries: list[FeatureQuery],
        ts: object,
        out_path: str | os.PathLike[str],
        as_of_seq: int | None = None,
        full_feature_names: bool = False,
        null_before: dict[str, int] | None = None,
    ) -> ExportResult:
        """Export the latest row of every entity at instant `ts` (no entity list): one row per
        key with a row in `[ts - ttl, ts]` of some queried view, `event_timestamp = ts`, the
        features as a point-in-time join at `ts`; ordered by key, streamed in bounded memory
        (see offline/entities_as_of.py). The views must share their join keys."""
        ts_ns = scalar_to_ns(ts, "entities_as_of")
        return self._reads.export_as_of(
            queries, ts_ns, out_path, as_of_seq, full_feature_names, null_before
        )

    def snapshot_files(self, view: str, as_of_seq: int | None = None) -> dict:
        """The Parquet files of `view` as of `as_of_seq` (default: the last seq appended) for
        another engine, after flushing the view's buffer (offline/snapshot_files.py)."""
        self._check_open()
        target = self.max_seq() if as_of_seq is None else as_of_seq
        self.flush(view)
        with self._lock:
            v, last = self._view(view), max(w.last_seq for w in self._views.values())
            state, complete = v.state(), (v.buffer[0].seq - 1 if v.buffer else max(target, last))
        grace = self._options.snapshot_grace_s
        return describe_snapshot(state, self._dir / view, target, complete, grace)

    # ----------------------------------------------------------------- retention

    def set_retention(self, view: str, retention_ns: int) -> None:
        """Keep only partitions holding events at or after `now - retention_ns` (0: keep all);
        expired ones are dropped by the background thread and by `drop_expired`."""
        maintenance.set_retention(self, view, retention_ns)

    def drop_expired(self, now_ns: int | None = None) -> dict[str, dict[str, int]]:
        """Drop, atomically per view, the partitions entirely before `now - retention` (`now_ns`,
        default the wall clock): retention record and manifest first, files retired after;
        {view: {"partitions", "files", "rows", "bytes"}} of the views that dropped."""
        return maintenance.drop_expired(self, now_ns)

    def rows(self) -> dict[str, int]:
        """{view: rows held}: in manifest-named files plus buffered."""
        with self._lock:
            return {n: sum(f.rows for f in v.files) + v.buffer_rows for n, v in self._views.items()}

    def retained_floor_ns(self, view: str) -> int | None:
        """Rows of `view` with an event time before this are dropped (or about to be) by
        retention; None when it has neither a retention nor a past drop."""
        return self._retention.floor_ns(view, time.time_ns())

    def count_before(
        self, entities: pa.Table | str | os.PathLike[str], cutoffs: dict[str, int]
    ) -> dict[str, int]:
        """Per view of `cutoffs` ({view: ns}), the entity rows with event_timestamp before it."""
        con = self._cursor()
        try:
            return count_before(entities, cutoffs, con)
        except (duckdb.Error, pa.ArrowException) as exc:
            raise query_error(exc) from exc
        finally:
            con.close()

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
