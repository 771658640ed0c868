"""Batch scoring without an entity list: the latest row of every entity at one instant.

`export_as_of` writes, for every entity key with a row in `[ts - ttl, ts]` (ttl 0: any row at or
before `ts`) in at least one queried view, one row: the keys, `event_timestamp = ts`, and each
view's features as a point-in-time join at `ts` gives them (ttl applied: an entity whose latest
row in a view is older than that view's ttl gets nulls for it). Rows are ordered by key.
Every queried view must have the same join keys.

Streaming and memory: DuckDB writes the distinct keys, sorted, to a temporary Parquet file (it
spills beyond its memory limit); they are then joined `chunk_rows` keys at a time — with the
position plan (export_pipeline) when every view has one int64 key, a chunk reading only the
row groups whose key statistics overlap it, else with the DuckDB plan — and each chunk is
appended to the output as row groups. Memory is bounded by a chunk, not by the entities.
Pure functions over a snapshot and cursor the caller owns; thread-safe.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from offline._export_io import open_writer
from offline.entities import EntityInput, load_entities
from offline.errors import SchemaMismatchError, query_error
from offline.export_pipeline import OUT_ROW_GROUP, join_by_positions
from offline.feature_query import FeatureQuery
from offline.join_plan import check_queries, plan_join, use_int_matcher
from offline.names import EVENT_TS, quote_ident, sql_string
from offline.options import OfflineOptions
from offline.retention import null_before_table, outside_columns
from offline.source import Bounds, ViewSnapshot, source_sql

TS_TYPE = pa.timestamp("ns", tz="UTC")


def export_as_of(
    con: duckdb.DuckDBPyConnection,
    snaps: dict[str, ViewSnapshot],
    queries: list[FeatureQuery],
    ts_ns: int,
    as_of_seq: int | None,
    full_feature_names: bool,
    out_path: str,
    keys_path: str,
    options: OfflineOptions,
    null_before: dict[str, int] | None = None,
    chunk_rows: int = 1 << 20,
) -> int:
    """Write the entities of `snaps` at `ts_ns` (see the module docstring) to `out_path`;
    `keys_path` is a temporary file the caller removes. Returns the rows written."""
    if not queries:
        raise SchemaMismatchError("an export needs at least one FeatureQuery")
    first = snaps[queries[0].view]
    keys = first.keys
    for q in queries:
        if sorted(snaps[q.view].keys) != sorted(keys):
            raise SchemaMismatchError(
                f"entities_as_of needs views with the same join keys: view {q.view!r} has "
                f"{list(snaps[q.view].keys)}, view {first.view!r} has {list(keys)}"
            )
    key_fields = [first.schema.field(k) for k in keys]
    ent_schema = pa.schema([*key_fields, pa.field(EVENT_TS, TS_TYPE)])
    probe = load_entities(ent_schema.empty_table(), con, read_path=True)
    fields = check_queries(queries, snaps, probe, full_feature_names)
    outside = outside_columns(queries, fields, null_before, ts_ns)
    _distinct_keys(con, snaps, queries, keys, ts_ns, as_of_seq, keys_path)
    positions = options.join_plan == "auto" and all(use_int_matcher(snaps[q.view]) for q in queries)
    chunk = max(1, min(chunk_rows, options.matcher_max_entities))
    out_schema = pa.schema([*ent_schema, *fields])
    rows = 0
    threads = options.duckdb_threads or os.cpu_count() or 2
    with (
        ThreadPoolExecutor(threads, thread_name_prefix="rh-export") as pool,
        open_writer(out_path, out_schema) as writer,
    ):
        reader = pq.ParquetFile(keys_path)
        for batch in reader.iter_batches(batch_size=chunk):
            n = batch.num_rows
            table = pa.Table.from_arrays(
                [
                    *(batch.column(k).cast(f.type) for k, f in zip(keys, key_fields, strict=True)),
                    pa.array(np.full(n, ts_ns, dtype=np.int64), type=pa.int64()).cast(TS_TYPE),
                ],
                schema=ent_schema,
            )
            ent = load_entities(table, con, read_path=True)
            if positions:
                key_col = table.column(keys[0])
                bounds = (int(key_col[0].as_py()), int(key_col[n - 1].as_py()))
                joined = join_by_positions(
                    pool, snaps, ent, table, queries, fields, as_of_seq, key_range=bounds
                )
                for part in joined.slices(pool, OUT_ROW_GROUP):
                    writer.write_table(null_before_table(part.cast(out_schema), outside))
            else:
                out = _join_duckdb(con, snaps, ent, table, queries, as_of_seq, full_feature_names)
                out = null_before_table(out.cast(out_schema), outside)
                writer.write_table(out, row_group_size=OUT_ROW_GROUP)
            rows += n
    return rows


def _distinct_keys(
    con: duckdb.DuckDBPyConnection,
    snaps: dict[str, ViewSnapshot],
    queries: list[FeatureQuery],
    keys: tuple[str, ...],
    ts_ns: int,
    as_of_seq: int | None,
    path: str,
) -> None:
    """The distinct keys with a row in some view's window at `ts_ns`, sorted, to `path`."""
    params: dict[str, object] = {}
    cols = ", ".join(quote_ident(k) for k in keys)
    parts = []
    for i, q in enumerate(queries):
        lo = ts_ns - q.ttl_ns if q.ttl_ns > 0 else None
        src, _ = source_sql(
            con, snaps[q.view], f"k{i}", list(keys), Bounds(lo, ts_ns, as_of_seq), params
        )
        parts.append(f"SELECT {cols} FROM {src}")
    sql = (
        f"COPY (SELECT DISTINCT {cols} FROM ({' UNION ALL '.join(parts)}) ORDER BY {cols}) "
        f"TO {sql_string(path)} (FORMAT parquet)"
    )
    try:
        con.execute(sql, params).fetchall()
    except duckdb.Error as exc:
        raise query_error(exc) from exc


def _join_duckdb(
    con: duckdb.DuckDBPyConnection,
    snaps: dict[str, ViewSnapshot],
    ent: EntityInput,
    table: pa.Table,
    queries: list[FeatureQuery],
    as_of_seq: int | None,
    full_feature_names: bool,
) -> pa.Table:
    """One chunk through the DuckDB plan (views the position plan does not serve)."""
    plan = plan_join(con, snaps, ent, queries, as_of_seq, full_feature_names, None)
    try:
        result = con.sql(plan.sql, params=plan.params).to_arrow_table()
    except duckdb.Error as exc:
        raise query_error(exc) from exc
    eid = result.column(result.num_columns - 1).to_numpy()
    inverse = np.empty(len(eid), np.int64)
    inverse[eid] = np.arange(len(eid), dtype=np.int64)
    result = result.take(pa.array(inverse))
    for f in plan.fields:
        table = table.append_column(f, result.column(f.name).cast(f.type))
    return table


def remove(path: str) -> None:
    """Remove a temporary file if it exists."""
    Path(path).unlink(missing_ok=True)
