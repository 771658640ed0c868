"""Point-in-time export by row positions: match in numba, gather in entity order, write Parquet.

The plan for joins whose every view has one int64 key (the numba matcher's views), with no
DuckDB query in the data path:
1. Pieces: the row groups of the view's snapshot files whose statistics can hold a row with
   `_seq <= as_of_seq` and `lo <= event_timestamp <= hi` (date and row-group pruning), plus the
   in-memory buffer; each piece gets a contiguous range of positions.
2. Match: the five key/version columns of each piece are decoded by a pool of threads (pyarrow
   releases the GIL) while the calling thread feeds them to `IntKeyMatcher` (numba, nogil), so
   decoding and matching overlap; memory: O(entity rows) plus the pieces in flight.
3. Gather: the matched positions are sorted; each piece holding a match decodes only the
   requested feature columns (text as dictionary indices), `take`s its rows and scatters them
   into entity order, in the pool (offline/export_gather.py; `Joined`).
4. Write: row group by row group (zero-copy slices), zstd.
Memory is bounded by the entity rows (their columns and features) plus a few pieces in
flight, not by the feature rows; freed memory goes back to the OS between phases.
Pure functions over a snapshot the caller pinned; thread-safe.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from offline._export_io import Clock, open_writer, ordered_map, release_memory
from offline.entities import EntityInput
from offline.errors import OfflineCorruptionError, OfflineError
from offline.export_gather import gather_ordered
from offline.feature_query import FeatureQuery
from offline.join_plan import check_queries, use_int_matcher
from offline.names import CREATED_TS, EVENT_TS, ROW_COLUMN, SEQ_COLUMN
from offline.options import OfflineOptions
from offline.pit_match import IntKeyMatcher
from offline.retention import null_before_table, outside_columns
from offline.schema import pad_to, stored_schema
from offline.source import ViewSnapshot
from offline.timestamps import array_to_ns

OUT_ROW_GROUP = 128 * 1024  # rows per written row group


@dataclass(frozen=True)
class Piece:
    """A run of a view's rows: row group `group` of Parquet `path`, or the buffer table."""

    base: int  # first position
    rows: int
    path: str | None = None
    group: int = 0
    metadata: pq.FileMetaData | None = None
    table: pa.Table | None = None
    columns: frozenset[str] = frozenset()  # columns the piece holds

    def read(self, columns: list[str], as_dictionary: frozenset[str] = frozenset()) -> pa.Table:
        """`columns` of the piece; columns it lacks (features added later) are left out.
        Those in `as_dictionary` (text) may come dictionary-encoded, as stored: decoding only
        the indices and taking the matched rows before the text costs far less."""
        have = [c for c in columns if c in self.columns]
        if self.table is not None:
            return self.table.select(have)
        try:
            # memory-mapped: the column chunks are decoded in place, without a copy per read
            # (safe because snapshot files are immutable and pinned while the export runs)
            pf = pq.ParquetFile(
                self.path,
                metadata=self.metadata,
                memory_map=True,
                read_dictionary=[c for c in have if c in as_dictionary] or None,
            )
            return pf.read_row_group(self.group, columns=have, use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            raise _damaged(str(self.path), exc) from exc


def pieces(
    snap: ViewSnapshot,
    lo_ns: int | None,
    hi_ns: int | None,
    as_of_seq: int | None,
    key_range: tuple[int, int] | None = None,
) -> list[Piece]:
    """The row groups (and buffer) of `snap` a join over `[lo_ns, hi_ns]` at `as_of_seq` reads
    (`key_range`: inclusive bounds of the one int64 key, when the entity keys are bounded)."""
    out: list[Piece] = []
    base = 0
    for f in snap.prune(lo_ns, hi_ns):
        if as_of_seq is not None and f.min_seq > as_of_seq:
            continue
        path = str(snap.view_dir / f.path)
        try:
            md = pq.read_metadata(path)
        except (OSError, pa.ArrowException) as exc:
            raise _damaged(path, exc) from exc
        arrow = md.schema.to_arrow_schema()
        names = arrow.names
        leaves = [md.schema.column(i).path for i in range(md.num_columns)]
        ets_i, seq_i = leaves.index(EVENT_TS), leaves.index(SEQ_COLUMN)
        key_i = leaves.index(snap.keys[0])
        ets_type = arrow.field(EVENT_TS).type
        ns = pa.types.is_timestamp(ets_type) and ets_type.unit == "ns"  # raw stats are ns
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            bounds = (lo_ns, hi_ns) if ns else (None, None)
            if rg.num_rows == 0 or _skip(rg, ets_i, seq_i, *bounds, as_of_seq):
                continue
            if key_range is not None and _outside_keys(rg.column(key_i).statistics, key_range):
                continue
            out.append(Piece(base, rg.num_rows, path, g, md, columns=frozenset(names)))
            base += rg.num_rows
    if snap.buffer:
        schema = stored_schema(snap.schema)
        table = pa.concat_tables([pad_to(t, schema) for t in snap.buffer])
        out.append(Piece(base, table.num_rows, table=table, columns=frozenset(schema.names)))
    return out


def _damaged(path: str, exc: Exception) -> OfflineCorruptionError:
    return OfflineCorruptionError(
        f"offline Parquet file {path!r} is damaged or unreadable: {exc}", path=path
    )


def _outside_keys(stats: pq.Statistics | None, key_range: tuple[int, int]) -> bool:
    if stats is None or not stats.has_min_max or stats.physical_type != "INT64":
        return False
    return stats.max_raw < key_range[0] or stats.min_raw > key_range[1]


def _skip(
    rg: pq.RowGroupMetaData,
    ets_i: int,
    seq_i: int,
    lo_ns: int | None,
    hi_ns: int | None,
    as_of_seq: int | None,
) -> bool:
    """The row group's statistics show no row can pass the bounds."""
    ets, seq = rg.column(ets_i).statistics, rg.column(seq_i).statistics
    if as_of_seq is not None and seq is not None and seq.has_min_max and seq.min > as_of_seq:
        return True
    if ets is None or not ets.has_min_max or ets.physical_type != "INT64":
        return False
    if lo_ns is not None and ets.max_raw < lo_ns:
        return True
    return hi_ns is not None and ets.min_raw > hi_ns


def match_positions(
    pool: ThreadPoolExecutor,
    ent_keys: pa.Array | pa.ChunkedArray,
    ent_ts: np.ndarray,
    key: str,
    parts: list[Piece],
    q: FeatureQuery,
    lo_ns: int | None,
    as_of_seq: int | None,
    ahead: int,
) -> np.ndarray:
    """Per entity row, the position of its matched feature row among `parts`, or -1."""
    keys = ent_keys.combine_chunks() if isinstance(ent_keys, pa.ChunkedArray) else ent_keys
    valid = None
    if keys.null_count:
        valid = keys.is_valid().to_numpy(zero_copy_only=False)
        keys = keys.fill_null(0)
    # the matcher's setup (a sort of the entity rows) runs in the pool beside the first decodes
    building = pool.submit(
        IntKeyMatcher,
        np.ascontiguousarray(keys.cast(pa.int64()).to_numpy(zero_copy_only=False)),
        np.ascontiguousarray(ent_ts),
        valid,
    )
    cols = [key, EVENT_TS, CREATED_TS, SEQ_COLUMN, ROW_COLUMN]
    matcher: IntKeyMatcher | None = None
    for part, batch in zip(
        parts, ordered_map(pool, lambda p: p.read(cols), parts, ahead), strict=True
    ):
        if matcher is None:
            matcher = building.result()
        matcher.add(batch, key, as_of_seq, lo_ns, part.base)
    return (matcher or building.result()).finish_positions(q.ttl_ns)


@dataclass
class Joined:
    """A join result: the entity rows plus the feature columns, all in entity order."""

    entities: pa.Table
    columns: list[pa.Array]
    fields: list[pa.Field]

    @property
    def num_rows(self) -> int:
        return self.entities.num_rows

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([*self.entities.schema, *self.fields])

    def slice(self, a: int, b: int) -> pa.Table:
        columns = [
            *self.entities.slice(a, b - a).columns,
            *(c.slice(a, b - a) for c in self.columns),
        ]
        return pa.Table.from_arrays(columns, schema=self.schema)

    def slices(self, pool: ThreadPoolExecutor, rows: int) -> Iterator[pa.Table]:
        """The rows in order, `rows` at a time (zero-copy slices; `pool` is unused)."""
        for a in range(0, self.num_rows, rows):
            yield self.slice(a, min(a + rows, self.num_rows))


def export_by_positions(
    snaps: dict[str, ViewSnapshot],
    ent: EntityInput,
    queries: list[FeatureQuery],
    fields: list[pa.Field],
    as_of_seq: int | None,
    out_path: str,
    threads: int | None = None,
    outside: dict[str, int] | None = None,
) -> tuple[int, dict[str, float]]:
    """Write the join to Parquet at `out_path`: entity columns in input order, then `fields`.

    Every view of `queries` must have one int64 key. Returns the rows written and the seconds
    spent per phase ("match", "gather", "write", wall and CPU). `outside`: output column ->
    cutoff ns before which it reads null (offline.retention.outside_columns)."""
    timings = {k: 0.0 for k in ("match", "gather", "write", "match_cpu", "gather_cpu", "write_cpu")}
    clock = Clock(timings)
    table = ent.table
    if table is None:
        assert ent.path is not None
        try:
            table = pq.read_table(ent.path, use_threads=False)
        except (OSError, pa.ArrowInvalid) as exc:
            raise OfflineError(f"entity file {ent.path!r} is not readable: {exc}") from exc
    n_threads = threads or os.cpu_count() or 2
    with ThreadPoolExecutor(n_threads, thread_name_prefix="rh-export") as pool:
        joined = join_by_positions(pool, snaps, ent, table, queries, fields, as_of_seq, clock)
        joined_rows = joined.num_rows
        with clock("write"), open_writer(out_path, joined.schema) as writer:
            for part in joined.slices(pool, OUT_ROW_GROUP):
                writer.write_table(null_before_table(part, outside or {}))
    del joined, table
    release_memory()
    return joined_rows, timings


def join_by_positions(
    pool: ThreadPoolExecutor,
    snaps: dict[str, ViewSnapshot],
    ent: EntityInput,
    table: pa.Table,
    queries: list[FeatureQuery],
    fields: list[pa.Field],
    as_of_seq: int | None,
    clock: Clock | None = None,
    key_range: tuple[int, int] | None = None,
) -> Joined:
    """`table` (the rows of `ent`) with the features `fields` of `queries` appended.

    `key_range`: inclusive bounds of the entity keys, to skip row groups outside them."""
    clock = clock or Clock({})
    ets = ent.ets if ent.ets is not None else array_to_ns(table.column(EVENT_TS), EVENT_TS)
    ets_np = np.asarray(ets.to_numpy(zero_copy_only=False), dtype=np.int64)
    ahead = max(1, pool._max_workers) + 1
    joined = Joined(table, [], [])
    at = 0
    for q in queries:
        snap = snaps[q.view]
        key = snap.keys[0]
        mine = fields[at : at + len(q.features)]
        at += len(q.features)
        hi = ent.max_ts if ent.max_ts is not None else 0
        lo = None
        if q.ttl_ns > 0:
            lo = (ent.min_ts if ent.min_ts is not None else 0) - q.ttl_ns
        with clock("match"):
            parts = pieces(snap, lo, hi, as_of_seq, key_range)
            pos = match_positions(
                pool, table.column(key), ets_np, key, parts, q, lo, as_of_seq, ahead
            )
        release_memory()  # the decoded key columns and the matcher
        with clock("gather"):
            joined.columns += gather_ordered(pool, parts, pos, list(q.features), mine, ahead)
            joined.fields += mine
        release_memory()
    return joined


def try_export(
    snaps: dict[str, ViewSnapshot],
    ent: EntityInput,
    queries: list[FeatureQuery],
    as_of_seq: int | None,
    full_feature_names: bool,
    out_path: str,
    options: OfflineOptions,
    null_before: dict[str, int] | None = None,
) -> tuple[int, dict[str, float]] | None:
    """`export_by_positions` when the options and views allow it (plan "auto", every view with
    one int64 key, at most `matcher_max_entities` entity rows), else None: the caller runs the
    DuckDB plan. Validates the queries first (SchemaMismatchError). `null_before`: view ->
    cutoff ns before which its features read null (offline.retention)."""
    fields = check_queries(queries, snaps, ent, full_feature_names)
    if options.join_plan != "auto" or ent.num_rows > options.matcher_max_entities:
        return None
    if not all(use_int_matcher(snaps[q.view]) for q in queries):
        return None
    outside = outside_columns(queries, fields, null_before, ent.min_ts)
    return export_by_positions(
        snaps, ent, queries, fields, as_of_seq, out_path, options.duckdb_threads, outside
    )
