"""A view's rows at one instant (`ViewSnapshot`) and how a DuckDB query reads them.

A snapshot is immutable: the Parquet files named by the manifest plus the in-memory buffer
batches at the moment it was taken. The store keeps the files of a live snapshot on disk until
it is released, so a query never sees a file vanish under it. Safe to use from any thread; the
DuckDB connection passed in must belong to the calling thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from offline.manifest import FileEntry
from offline.names import EVENT_TS, SEQ_COLUMN, literal_path, quote_ident
from offline.partition import days_in_range
from offline.schema import pad_to, stored_schema


@dataclass(frozen=True)
class ViewSnapshot:
    """Files and buffered batches of one view; `max_seq` is the highest seq they hold."""

    view: str
    schema: pa.Schema
    keys: tuple[str, ...]
    view_dir: Path
    files: tuple[FileEntry, ...]
    buffer: tuple[pa.Table, ...]
    max_seq: int

    @property
    def features(self) -> list[str]:
        return self.schema.names[len(self.keys) + 2 :]

    def prune(self, lo_ns: int | None, hi_ns: int | None) -> list[FileEntry]:
        """Files whose partition can hold an event_timestamp in `[lo_ns, hi_ns]`."""
        days = days_in_range({f.day for f in self.files}, lo_ns, hi_ns)
        return [f for f in self.files if f.day in days]

    def buffer_table(self) -> pa.Table:
        """Buffered rows as one table of the stored schema (zero-copy when possible)."""
        schema = stored_schema(self.schema)
        table = (
            pa.concat_tables([pad_to(t, schema) for t in self.buffer])
            if self.buffer
            else schema.empty_table()
        )
        # Vectors as variable lists, as DuckDB reads them from Parquet: mixing its ARRAY type
        # with LIST in one query hits a DuckDB 2.0 cast bug (garbage list lengths).
        for i, f in enumerate(schema):
            if pa.types.is_fixed_size_list(f.type):
                table = table.set_column(
                    i, f.name, table.column(i).cast(pa.list_(f.type.value_type))
                )
        return table


@dataclass(frozen=True)
class Bounds:
    """Row filter of a read: `lo_ns <= event_timestamp <= hi_ns`, `_seq <= as_of_seq`."""

    lo_ns: int | None = None
    hi_ns: int | None = None
    as_of_seq: int | None = None


def source_sql(
    con: duckdb.DuckDBPyConnection,
    snap: ViewSnapshot,
    tag: str,
    columns: list[str],
    bounds: Bounds,
    params: dict[str, object],
    filter_rows: bool = True,
) -> tuple[str, list[FileEntry]]:
    """SQL of a subquery yielding `columns` of the snapshot's rows within `bounds`.

    `filter_rows=False` prunes files only (a caller that selects rows by `(_seq, _row)` saves
    decoding event_timestamp again). Registers the buffer as `__rh_buf_<tag>` on `con` and adds the pruned file list to `params`
    (paths travel as bound parameters, never inside the SQL text). Returns the SQL and the
    files it reads. `tag` must be an identifier fragment chosen by the caller.
    """
    files = snap.prune(bounds.lo_ns, bounds.hi_ns)
    filters = []
    if bounds.lo_ns is not None:
        filters.append(f"epoch_ns({quote_ident(EVENT_TS)}) >= {int(bounds.lo_ns)}")
    if bounds.hi_ns is not None:
        filters.append(f"epoch_ns({quote_ident(EVENT_TS)}) <= {int(bounds.hi_ns)}")
    if bounds.as_of_seq is not None:
        filters.append(f"{quote_ident(SEQ_COLUMN)} <= {int(bounds.as_of_seq)}")
    where = (" WHERE " + " AND ".join(filters)) if filters and filter_rows else ""
    buf_name = f"__rh_buf_{tag}"
    con.register(buf_name, snap.buffer_table())
    parts = [f"SELECT {', '.join(quote_ident(c) for c in columns)} FROM {buf_name}{where}"]
    if files:
        present = set().union(*(f.columns for f in files))
        # Columns no selected file holds (features added later) come from the buffer side of
        # UNION ALL BY NAME as nulls; naming them in the Parquet SELECT would fail to bind.
        cols = [c for c in columns if c in present]
        param = f"__rh_files_{tag}"
        params[param] = [literal_path(str(snap.view_dir / f.path)) for f in files]
        parts.insert(
            0,
            f"SELECT {', '.join(quote_ident(c) for c in cols)} "
            f"FROM read_parquet(${param}, union_by_name = true, hive_partitioning = false){where}",
        )
    return "(" + " UNION ALL BY NAME ".join(parts) + ")", files
