"""The query side of OfflineStore: scans, latest-per-entity, point-in-time joins and exports.

`_QueryMixin` holds the read methods `OfflineStore` inherits; the store owns the state they read
(snapshots, the DuckDB connection, options). Request and result types (`FeatureQuery`,
`ExportResult`) live in `offline/query.py`.
Invariant: every query pins a snapshot with `_snapshot` and releases it exactly once, when the
query (or the stream it returns) ends, on success or failure.
Thread-safety: any number of threads may query at once; each uses its own DuckDB cursor.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from offline._fsio import TEMP_SUFFIX
from offline.entities import EntityInput, load_entities
from offline.errors import SchemaMismatchError
from offline.historical import JoinPlan, plan_join, query_error
from offline.names import CREATED_TS, EVENT_TS, SEQ_COLUMN, quote_ident, sql_string
from offline.options import OfflineOptions
from offline.pit_join import version_struct
from offline.query import ExportResult, FeatureQuery
from offline.schema import stored_schema
from offline.source import Bounds, ViewSnapshot, source_sql
from offline.timestamps import scalar_to_ns

# The store's logger: export and query logs keep their historical name.
log = logging.getLogger("offline.store")


class _QueryMixin:
    """Read methods of OfflineStore; the store provides the attributes and helpers below."""

    _options: OfflineOptions
    last_scan_files: list[str]
    last_join_files: list[str]

    # Provided by OfflineStore (declared here for type checkers only).
    _check_open: Callable[[], None]
    _snapshot: Callable[[list[str]], dict[str, ViewSnapshot]]
    _release: Callable[[dict[str, ViewSnapshot]], None]
    _cursor: Callable[[], duckdb.DuckDBPyConnection]

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
            plan = self._plan(con, snaps, ent, queries, as_of_seq, full_feature_names, None)
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

    def _plan(
        self,
        con: duckdb.DuckDBPyConnection,
        snaps: dict[str, ViewSnapshot],
        ent: EntityInput,
        queries: list[FeatureQuery],
        as_of_seq: int | None,
        full_feature_names: bool,
        entity_columns: list[str] | None,
        for_parquet: bool = False,
    ) -> JoinPlan:
        """plan_join with this store's join-plan options (see OfflineOptions)."""
        return plan_join(
            con,
            snaps,
            ent,
            queries,
            as_of_seq,
            full_feature_names,
            entity_columns,
            for_parquet=for_parquet,
            force_asof=self._options.join_plan == "asof",
            matcher_max_entities=self._options.matcher_max_entities,
        )

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
            plan = self._plan(
                con, snaps, ent, queries, as_of_seq, full_feature_names, ent.schema.names, True
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
