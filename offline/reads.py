"""The read side of the offline store: scans, latest row per entity, point-in-time joins, exports.

`Reads` holds no state of its own: `OfflineStore` composes one and gives it the snapshot
functions, a DuckDB cursor factory and its options; its public methods delegate here.
Invariant: every read pins a snapshot with `snapshot` and releases it exactly once, when the
read (or the stream it returns) ends, on success or failure.
Thread-safety: any number of threads may read at once; each read uses its own DuckDB cursor.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from offline._fsio import TEMP_SUFFIX
from offline.entities import EntityInput, load_entities
from offline.entities_as_of import export_as_of
from offline.errors import SchemaMismatchError, naming_damage, query_error, snapshot_files
from offline.export_pipeline import try_export
from offline.feature_query import ExportResult, FeatureQuery
from offline.join_plan import JoinPlan, plan_join
from offline.latest import LatestBuckets
from offline.names import sql_string
from offline.options import OfflineOptions
from offline.retention import null_before_sql, null_before_table, outside_columns
from offline.schema import stored_schema
from offline.source import Bounds, ViewSnapshot, source_sql
from offline.timestamps import scalar_to_ns

# The store's logger: export logs keep the name operators filter on.
log = logging.getLogger("offline.store")

SPILL_PREFIX = "spill-"  # temp dirs of LatestBuckets under the DuckDB temp area


class Reads:
    """Read methods over an OfflineStore's snapshots; see the module docstring."""

    def __init__(
        self,
        snapshot: Callable[[list[str]], dict[str, ViewSnapshot]],
        release: Callable[[dict[str, ViewSnapshot]], None],
        cursor: Callable[[], duckdb.DuckDBPyConnection],
        options: OfflineOptions,
        temp_root: Path,
    ) -> None:
        """`snapshot(views)` pins (and checks the store is open), `release` unpins; `temp_root`
        is the DuckDB temp directory, where spills live."""
        self._snapshot = snapshot
        self._release = release
        self._cursor = cursor
        self._options = options
        self._temp_root = temp_root

    # ---- scans

    def scan(
        self,
        view: str,
        start: object = None,
        end: object = None,
        columns: list[str] | None = None,
        as_of_seq: int | None = None,
    ) -> pa.RecordBatchReader:
        """See OfflineStore.scan."""
        lo, hi = _range_ns(start, end)
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
            sql, _ = source_sql(con, snap, "scan", cols, Bounds(lo, hi, as_of_seq), params)
            try:
                rel = con.sql(f"SELECT * FROM {sql}", params=params)
                reader = rel.to_arrow_reader(64 * 1024)
            except duckdb.Error as exc:
                con.close()
                raise query_error(exc) from exc
        except BaseException:
            self._release(snaps)
            raise
        return pa.RecordBatchReader.from_batches(
            out_schema, self._stream(reader, out_schema, con, snaps)
        )

    def scan_files(self, view: str, start: object = None, end: object = None) -> list[str]:
        """The Parquet files a scan of `[start, end)` reads (its partition pruning), in order."""
        lo, hi = _range_ns(start, end)
        snaps = self._snapshot([view])
        try:
            snap = snaps[view]
            return [str(snap.view_dir / f.path) for f in snap.prune(lo, hi)]
        finally:
            self._release(snaps)

    def _stream(
        self,
        reader: pa.RecordBatchReader,
        schema: pa.Schema,
        con: duckdb.DuckDBPyConnection,
        snaps: dict[str, ViewSnapshot],
    ) -> Iterator[pa.RecordBatch]:
        try:
            with naming_damage(snaps.values()):
                for batch in _checked(reader):
                    yield pa.RecordBatch.from_arrays(
                        [batch.column(f.name).cast(f.type) for f in schema], schema=schema
                    )
        finally:
            con.close()
            self._release(snaps)

    # ---- latest row per entity

    @contextmanager
    def latest_buckets(
        self, view: str, entities_per_bucket: int, as_of_seq: int | None = None
    ) -> Iterator[LatestBuckets]:
        """See OfflineStore.latest_buckets."""
        snaps = self._snapshot([view])
        temp = self._temp_root / f"{SPILL_PREFIX}{uuid.uuid4().hex[:12]}"
        con: duckdb.DuckDBPyConnection | None = None
        try:
            con = self._cursor()
            yield LatestBuckets(con, snaps[view], as_of_seq, entities_per_bucket, temp)
        finally:
            if con is not None:
                con.close()
            shutil.rmtree(temp, ignore_errors=True)
            self._release(snaps)

    def latest_per_entity(self, view: str, as_of_seq: int | None = None) -> pa.Table:
        """See OfflineStore.latest_per_entity."""
        with self.latest_buckets(view, self._options.latest_bucket_entities, as_of_seq) as parts:
            table = pa.concat_tables([parts.table(b) for b in range(parts.buckets)])
            keys = [(k, "ascending") for k in parts.keys]
        return table.sort_by(keys)

    # ---- point-in-time joins

    def get_historical(
        self,
        entities: pa.Table | str | os.PathLike[str],
        queries: list[FeatureQuery],
        as_of_seq: int | None = None,
        full_feature_names: bool = False,
        null_before: dict[str, int] | None = None,
    ) -> pa.Table:
        """See OfflineStore.get_historical."""
        snaps, con = self._pin([q.view for q in queries])
        try:
            with naming_damage(snaps.values()):
                ent = load_entities(entities, con, read_path=True)
                plan = self._plan(con, snaps, ent, queries, as_of_seq, full_feature_names, None)
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
        return null_before_table(
            table, outside_columns(queries, plan.fields, null_before, ent.min_ts)
        )

    def join_files(
        self,
        entities: pa.Table,
        queries: list[FeatureQuery],
        as_of_seq: int | None = None,
    ) -> list[str]:
        """The Parquet files `get_historical(entities, queries, as_of_seq)` reads (its pruning)."""
        snaps, con = self._pin([q.view for q in queries])
        try:
            ent = load_entities(entities, con, read_path=True)
            return self._plan(con, snaps, ent, queries, as_of_seq, False, None).files
        finally:
            con.close()
            self._release(snaps)

    def export(
        self,
        entities: pa.Table | str | os.PathLike[str],
        queries: list[FeatureQuery],
        out_path: str | os.PathLike[str],
        as_of_seq: int | None = None,
        full_feature_names: bool = False,
        null_before: dict[str, int] | None = None,
    ) -> ExportResult:
        """See OfflineStore.export."""
        out = Path(out_path)
        snaps, con = self._pin([q.view for q in queries])
        seq = _export_seq(snaps, as_of_seq)
        temp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")
        started = time.perf_counter()
        try:
            ent = load_entities(entities, con, read_path=False)
            # views with one int64 key: match, gather and write without DuckDB (export_pipeline)
            fast = try_export(
                snaps,
                ent,
                queries,
                as_of_seq,
                full_feature_names,
                str(temp),
                self._options,
                null_before,
            )
            if fast is not None:
                os.replace(temp, out)
                log.info(
                    "offline: exported %d rows at seq %d to %s in %.3fs (%s)",
                    fast[0],
                    seq,
                    out,
                    time.perf_counter() - started,
                    ", ".join(f"{k} {v:.3f}s" for k, v in fast[1].items()),
                )
                return ExportResult(rows=fast[0], seq=seq, path=str(out))
            plan = self._plan(
                con, snaps, ent, queries, as_of_seq, full_feature_names, ent.schema.names, True
            )
            sql = null_before_sql(
                plan.sql, outside_columns(queries, plan.fields, null_before, ent.min_ts)
            )
            copy = f"COPY ({sql}) TO {sql_string(str(temp))} (FORMAT parquet, COMPRESSION zstd)"
            try:
                rows = con.execute(copy, plan.params).fetchall()
            except duckdb.Error as exc:
                raise query_error(exc, snapshot_files(snaps.values())) from exc
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

    def export_as_of(
        self,
        queries: list[FeatureQuery],
        ts_ns: int,
        out_path: str | os.PathLike[str],
        as_of_seq: int | None = None,
        full_feature_names: bool = False,
        null_before: dict[str, int] | None = None,
    ) -> ExportResult:
        """See OfflineStore.export_as_of."""
        out = Path(out_path)
        snaps, con = self._pin([q.view for q in queries])
        seq = _export_seq(snaps, as_of_seq)
        tag = uuid.uuid4().hex[:12]
        temp = out.with_name(f".{out.name}.{tag}{TEMP_SUFFIX}")
        keys = self._temp_root / f"{SPILL_PREFIX}keys-{tag}.parquet"
        started = time.perf_counter()
        try:
            self._temp_root.mkdir(parents=True, exist_ok=True)
            with naming_damage(snaps.values()):
                n = export_as_of(
                    con,
                    snaps,
                    queries,
                    ts_ns,
                    as_of_seq,
                    full_feature_names,
                    str(temp),
                    str(keys),
                    self._options,
                    null_before,
                )
            os.replace(temp, out)
        finally:
            temp.unlink(missing_ok=True)
            keys.unlink(missing_ok=True)
            con.close()
            self._release(snaps)
        log.info(
            "offline: exported %d entities as of %d at seq %d to %s in %.3fs",
            n,
            ts_ns,
            seq,
            out,
            time.perf_counter() - started,
        )
        return ExportResult(rows=n, seq=seq, path=str(out))

    def _pin(self, views: list[str]) -> tuple[dict[str, ViewSnapshot], duckdb.DuckDBPyConnection]:
        """Pin `views` and open a cursor; the caller closes the cursor and releases the
        snapshot. On failure nothing stays pinned."""
        snaps = self._snapshot(views)
        try:
            return snaps, self._cursor()
        except BaseException:
            self._release(snaps)
            raise

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
        with naming_damage(snaps.values()):  # the int-key matcher streams the files
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

    @staticmethod
    def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]) -> pa.Table:
        try:
            return con.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise query_error(exc) from exc


def _export_seq(snaps: dict[str, ViewSnapshot], as_of_seq: int | None) -> int:
    """The seq an export reflects: `as_of_seq`, or the highest seq appended to its views."""
    seq = max((s.max_seq for s in snaps.values()), default=0)
    return seq if as_of_seq is None else min(seq, as_of_seq)


def _range_ns(start: object, end: object) -> tuple[int | None, int | None]:
    """`[start, end)` as inclusive int64 ns bounds (None: unbounded)."""
    lo = scalar_to_ns(start, "scan start") if start is not None else None
    hi = scalar_to_ns(end, "scan end") - 1 if end is not None else None
    return lo, hi


def _checked(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """Iterate a DuckDB result reader, mapping its failures to offline errors."""
    it = iter(reader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (duckdb.Error, pa.ArrowException, OSError) as exc:  # Arrow's IO status: OSError
            raise query_error(exc) from exc
        yield batch
