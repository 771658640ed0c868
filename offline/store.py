"""OfflineStore: Hive-partitioned Parquet per view, an in-memory Arrow buffer, DuckDB queries.

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
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from offline._fsio import TEMP_SUFFIX, fsync_dir
from offline.entities import load_entities
from offline.errors import (
    CorruptionError,
    OfflineError,
    SchemaMismatchError,
    UnknownViewError,
)
from offline.historical import plan_join, query_error
from offline.manifest import FileEntry, ViewState, read_manifest, write_manifest
from offline.names import (
    CREATED_TS,
    EVENT_TS,
    SEQ_COLUMN,
    check_identifier,
    literal_path,
    quote_ident,
    sql_string,
)
from offline.options import OfflineOptions
from offline.partition import partition_dir, split_by_day, write_part
from offline.pit_join import version_struct
from offline.query import ExportResult, FeatureQuery
from offline.schema import check_evolution, conform_batch, normalize_schema, pad_to, stored_schema
from offline.source import Bounds, ViewSnapshot, source_sql
from offline.timestamps import scalar_to_ns

log = logging.getLogger(__name__)

OFFLINE_DIR = "offline"  # <root>/offline, on-disk layout, do not change
_DUCKDB_TMP = "_duckdb_tmp"


@dataclass
class _Buffered:
    seq: int
    table: pa.Table
    appended_at: float


@dataclass
class _View:
    """Mutable state of one view; every field is guarded by OfflineStore._lock."""

    name: str
    schema: pa.Schema
    keys: tuple[str, ...]
    durable_seq: int = 0
    files: tuple[FileEntry, ...] = ()
    buffer: list[_Buffered] = field(default_factory=list)
    buffer_rows: int = 0
    last_seq: int = 0

    def state(self) -> ViewState:
        return ViewState(self.schema, self.keys, self.durable_seq, self.files)


class OfflineStore:
    """The offline (training) store of one root directory; see the module docstring."""

    def __init__(self, root: str | os.PathLike[str], options: OfflineOptions | None = None):
        self._options = options or OfflineOptions()
        self._dir = Path(root).absolute() / OFFLINE_DIR
        literal_path(str(self._dir.absolute()))  # refuse a root DuckDB cannot read literally
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._io_lock = threading.RLock()
        self._refs: Counter[Path] = Counter()
        self._obsolete: set[Path] = set()
        self._closed = False
        self._views: dict[str, _View] = {}
        # Parquet files read by the latest scan / join (instrumentation for pruning tests).
        self.last_scan_files: list[str] = []
        self.last_join_files: list[str] = []
        for name, st in read_manifest(self._dir).items():
            view = _View(name, st.schema, st.keys, st.durable_seq, st.files)
            view.last_seq = max([st.durable_seq] + [f.max_seq for f in st.files])
            self._views[name] = view
        self._check_and_clean()
        config: dict[str, object] = {
            "memory_limit": self._options.duckdb_memory_limit,
            "temp_directory": str(self._dir / _DUCKDB_TMP),
        }
        if self._options.duckdb_threads:
            config["threads"] = self._options.duckdb_threads
        self._con = duckdb.connect(":memory:", config=config)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if self._options.background:
            self._thread = threading.Thread(
                target=self._background, name="offline-flush", daemon=True
            )
            self._thread.start()

    # ----------------------------------------------------------------- open / close

    def _check_and_clean(self) -> None:
        """Verify the manifest's files exist; delete temp files and files it does not name."""
        for view in self._views.values():
            for f in view.files:
                if not (self._dir / view.name / f.path).is_file():
                    raise CorruptionError(
                        f"view {view.name!r}: Parquet file {self._dir / view.name / f.path} "
                        "named by the offline manifest is missing; restore it or remove the "
                        "offline directory to rebuild from the commit log",
                        path=str(self._dir / view.name / f.path),
                    )
        for leftover in self._dir.glob(f".*{TEMP_SUFFIX}"):
            leftover.unlink(missing_ok=True)
        for view_dir in self._dir.iterdir():
            if not view_dir.is_dir() or view_dir.name == _DUCKDB_TMP:
                continue
            view = self._views.get(view_dir.name)
            live = {f.path for f in view.files} if view else set()
            for part_dir in view_dir.glob("date=*"):
                for path in part_dir.iterdir():
                    rel = f"{part_dir.name}/{path.name}"
                    ours = path.name.endswith(TEMP_SUFFIX) or (
                        path.name.startswith("part-") and path.name.endswith(".parquet")
                    )
                    if ours and rel not in live:
                        log.info("offline: deleting leftover file %s", path)
                        path.unlink(missing_ok=True)

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
                    self._views[view] = _View(view, norm, tuple(keys))
                else:
                    existing.schema = norm
        log.info("offline: registered view %s (%d columns)", view, len(norm))

    def _view(self, view: str) -> _View:
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
            v.buffer.append(_Buffered(seq, table, now))
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

    def _flush_view(self, v: _View) -> None:
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
            entries = list(pool.map(lambda dp: self._write(view_dir, *dp, taken), parts))
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

    def _compact_view(self, v: _View, min_files: int) -> None:
        by_day: dict[int, list[FileEntry]] = {}
        for f in v.files:
            by_day.setdefault(f.day, []).append(f)
        view_dir = self._dir / v.name
        schema = stored_schema(v.schema)
        for day, group in sorted(by_day.items()):
            if len(group) < min_files:
                continue
            started = time.perf_counter()
            try:
                tables = [pad_to(pq.read_table(view_dir / f.path), schema) for f in group]
            except (OSError, pa.ArrowInvalid) as exc:
                raise CorruptionError(
                    f"view {v.name!r}: cannot read a file of partition {partition_dir(day)} "
                    f"for compaction: {exc}",
                    path=str(view_dir / partition_dir(day)),
                ) from exc
            ((_, rows),) = split_by_day(pa.concat_tables(tables), v.keys)
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
                        if v.buffer
                        and (
                            v.buffer_rows >= opts.buffer_rows
                            or now - v.buffer[0].appended_at >= opts.buffer_age_s
                        )
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
        self._check_open()
        lo = scalar_to_ns(start, "scan start") if start is not None else None
        hi = scalar_to_ns(end, "scan end") - 1 if end is not None else None
        snaps = self._snapshot([view])
        try:
            snap = snaps[view]
            full = stored_schema(snap.schema)
            cols = list(columns) if columns is not None else full.names
            for c in cols:
                if c not in full.names:
                    raise SchemaMismatchError(f"view {view!r} has no column {c!r}")
            out_schema = pa.schema([full.field(c) for c in cols])
            con = self._cursor()
            params: dict[str, object] = {}
            sql, files = source_sql(con, snap, "scan", cols, Bounds(lo, hi, as_of_seq), params)
            self.last_scan_files = [str(snap.view_dir / f.path) for f in files]
            try:
                rel = con.sql(f"SELECT * FROM {sql}", params=params)
                reader = rel.to_arrow_reader(64 * 1024)
            except duckdb.Error as exc:
                raise query_error(exc) from exc
        except BaseException:
            self._release(snaps)
            raise
        return pa.RecordBatchReader.from_batches(
            out_schema, self._stream(reader, out_schema, con, snaps)
        )

    def _stream(
        self,
        reader: pa.RecordBatchReader,
        schema: pa.Schema,
        con: duckdb.DuckDBPyConnection,
        snaps: dict[str, ViewSnapshot],
    ) -> Iterator[pa.RecordBatch]:
        try:
            for batch in _checked(reader):
                yield pa.RecordBatch.from_arrays(
                    [batch.column(f.name).cast(f.type) for f in schema], schema=schema
                )
        finally:
            con.close()
            self._release(snaps)

    def latest_per_entity(self, view: str, as_of_seq: int | None = None) -> pa.Table:
        """One row per entity, the latest by (event_ts, created_ts, _seq, _row), sorted by key.

        Columns: keys, event_timestamp, created_timestamp, _seq, features.
        """
        self._check_open()
        snaps = self._snapshot([view])
        try:
            snap = snaps[view]
            full = stored_schema(snap.schema)
            keys = [quote_ident(k) for k in snap.keys]
            out = [*snap.keys, EVENT_TS, CREATED_TS, SEQ_COLUMN, *snap.features]
            con = self._cursor()
            params: dict[str, object] = {}
            sql, _ = source_sql(
                con, snap, "latest", full.names, Bounds(None, None, as_of_seq), params
            )
            # One hash aggregation (max_by over the version struct), not a window sort of every
            # row: the audit calls this on whole views.
            version = version_struct(
                *(quote_ident(c) for c in (EVENT_TS, CREATED_TS, SEQ_COLUMN, "_row"))
            )
            row = ", ".join(f"'{c}': {quote_ident(c)}" for c in out[len(keys) :])
            query = (
                f"SELECT {', '.join(keys)}, __rh_best.* FROM (SELECT {', '.join(keys)}, "
                f"max_by({{{row}}}, {version}) AS __rh_best FROM {sql} GROUP BY {', '.join(keys)}) "
                f"ORDER BY {', '.join(keys)}"
            )
            try:
                table = con.sql(query, params=params).to_arrow_table()
            except duckdb.Error as exc:
                raise query_error(exc) from exc
            finally:
                con.close()
        finally:
            self._release(snaps)
        schema = pa.schema([full.field(c) for c in out])
        return pa.Table.from_arrays(
            [table.column(f.name).cast(f.type) for f in schema], schema=schema
        )

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
        self._check_open()
        snaps = self._snapshot([q.view for q in queries])
        con = self._cursor()
        try:
            ent = load_entities(entities, con, read_path=True)
            plan = plan_join(
                con,
                snaps,
                ent,
                queries,
                as_of_seq,
                full_feature_names,
                None,
                force_asof=self._options.join_plan == "asof",
                matcher_max_entities=self._options.matcher_max_entities,
            )
            self.last_join_files = plan.files
            result = self._run(con, plan.sql, plan.params)
        finally:
            con.close()
            self._release(snaps)
        table = ent.table
        assert table is not None
        # rows come unordered with their input position last: restore input order with one
        # take by the inverse permutation
        eid = result.column(result.num_columns - 1).to_numpy()
        inverse = np.empty(len(eid), np.int64)
        inverse[eid] = np.arange(len(eid), dtype=np.int64)
        result = result.take(pa.array(inverse))
        for f in plan.fields:
            table = table.append_column(f, result.column(f.name).cast(f.type))
        return table

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
        self._check_open()
        out = Path(out_path)
        snaps = self._snapshot([q.view for q in queries])
        seq = max((s.max_seq for s in snaps.values()), default=0)
        if as_of_seq is not None:
            seq = min(seq, as_of_seq)
        con = self._cursor()
        temp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")
        started = time.perf_counter()
        try:
            ent = load_entities(entities, con, read_path=False)
            plan = plan_join(
                con,
                snaps,
                ent,
                queries,
                as_of_seq,
                full_feature_names,
                ent.schema.names,
                for_parquet=True,
                force_asof=self._options.join_plan == "asof",
                matcher_max_entities=self._options.matcher_max_entities,
            )
            copy = (
                f"COPY ({plan.sql}) TO {sql_string(str(temp))} (FORMAT parquet, COMPRESSION zstd)"
            )
            try:
                rows = con.execute(copy, plan.params).fetchall()
            except duckdb.Error as exc:
                raise query_error(exc) from exc
            os.replace(temp, out)
        finally:
            temp.unlink(missing_ok=True)
            con.close()
            self._release(snaps)
        n = int(rows[0][0]) if rows else ent.num_rows
        log.info(
            "offline: exported %d rows at seq %d to %s in %.3fs",
            n,
            seq,
            out,
            time.perf_counter() - started,
        )
        return ExportResult(rows=n, seq=seq, path=str(out))

    def _run(self, con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> pa.Table:
        try:
            return con.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise query_error(exc) from exc

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


def _checked(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """Iterate a DuckDB result reader, mapping its failures to offline errors."""
    it = iter(reader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (duckdb.Error, pa.ArrowException) as exc:
            raise query_error(exc) from exc
        yield batch
