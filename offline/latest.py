"""The latest row of each entity of a view, bucket by bucket, in bounded memory.

"Latest" is the maximum of the version order (event_timestamp, created_timestamp, _seq, _row),
computed per bucket by a DuckDB window (`QUALIFY row_number() ... = 1`): on bucket-sized inputs
it is several times faster than a `max_by` hash aggregation over a struct of every feature.

`LatestBuckets` splits a view's entities into `buckets` groups by a hash of the key: it streams
the snapshot's rows once out of DuckDB and spills them into temp Arrow IPC files (`split_file`:
one file per streamed chunk, one record batch per bucket), then computes one bucket at a time
from its batches (read from the files): DuckDB's and Python's memory are bounded by one bucket (about
`entities_per_bucket` rows), whatever the size of the view. A view that fits in one bucket is
computed straight from the snapshot, with no spill. IPC, not Parquet: the files are written
and read once, and encoding Parquet cost several times the scan.

The bucket of an entity is `hash(bucket key) % buckets` in DuckDB, where the bucket key is the
int64 key of a view with one int64 key, and otherwise the key text: `i<int>;` or `s<len>:<text>`
per key column, `<len>` in code points (a prefix code: distinct key tuples never share a text).
`bucket_of` computes the same bucket for any Arrow array of bucket keys, so a caller can split
its own rows exactly as the view's.

Thread-safety: a LatestBuckets belongs to one thread (it uses the caller's DuckDB cursor).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from offline._latest_kernels import latest_rows
from offline.errors import query_error, snapshot_files
from offline.names import CREATED_TS, EVENT_TS, ROW_COLUMN, SEQ_COLUMN, quote_ident
from offline.schema import stored_schema
from offline.source import Bounds, ViewSnapshot, source_sql

BUCKET_COLUMN = "__rh_bucket"
SPILL_ROWS = 1 << 20  # rows per spill file (DuckDB result batches of this size)
# A caller splits its own rows into one file per chunk with one record batch per bucket; more
# buckets only make the batches smaller. The cap keeps per-bucket overhead (one DuckDB query and
# one batch per chunk file) small when a view holds many versions per entity.
MAX_BUCKETS = 1024


def int_keyed(snap: ViewSnapshot) -> bool:
    """Whether the view has one int64 key (its bucket key is the key itself, not a text)."""
    return len(snap.keys) == 1 and snap.schema.field(snap.keys[0]).type == pa.int64()


def key_text_sql(snap: ViewSnapshot) -> str:
    """DuckDB expression of the key text of a row (see the module docstring)."""
    parts = []
    for name in snap.keys:
        col = quote_ident(name)
        if snap.schema.field(name).type == pa.int64():
            parts.append(f"'i' || CAST({col} AS VARCHAR) || ';'")
        else:
            parts.append(f"'s' || CAST(length({col}) AS VARCHAR) || ':' || {col}")
    return "(" + " || ".join(parts) + ")"


def bucket_sql(snap: ViewSnapshot, buckets: int) -> str:
    """DuckDB expression of a row's bucket, an INTEGER in [0, buckets)."""
    key = quote_ident(snap.keys[0]) if int_keyed(snap) else key_text_sql(snap)
    return f"CAST(hash({key}) % {int(buckets)} AS INTEGER)"


def bucket_of(con: duckdb.DuckDBPyConnection, keys: pa.Array, buckets: int) -> np.ndarray:
    """The bucket (int32) of each bucket key: int64 keys, or key texts (any Arrow string type).

    Equal to `bucket_sql` of the row holding that key; `con` is the caller's cursor.
    """
    if pa.types.is_large_string(keys.type):
        keys = keys.cast(pa.string())
    con.register("__rh_bucket_keys", pa.table({"k": keys}))
    try:
        out = con.sql(
            f"SELECT CAST(hash(k) % {int(buckets)} AS INTEGER) AS b FROM __rh_bucket_keys"
        ).to_arrow_table()
    finally:
        con.unregister("__rh_bucket_keys")
    return out.column(0).to_numpy()


def latest_sql(source: str, keys: tuple[str, ...], values: list[str]) -> str:
    """One row per key of `source`: the keys, then `values` of the latest version (unordered)."""
    key_list = ", ".join(quote_ident(k) for k in keys)
    order = ", ".join(
        f"{quote_ident(c)} DESC" for c in (EVENT_TS, CREATED_TS, SEQ_COLUMN, ROW_COLUMN)
    )
    cols = ", ".join(quote_ident(c) for c in (*keys, *values))
    return (
        f"SELECT {cols} FROM {source} "
        f"QUALIFY row_number() OVER (PARTITION BY {key_list} ORDER BY {order}) = 1"
    )


def split_file(table: pa.Table, bucket: np.ndarray, buckets: int, path: Path) -> None:
    """Write `table` to a new Arrow IPC file at `path` whose record batch b holds the rows of
    bucket b (`bucket`: one int in [0, buckets) per row), in their order in `table`."""
    # int16 buckets (buckets <= MAX_BUCKETS) take numpy's radix sort: linear time
    small = bucket.astype(np.int16) if buckets <= np.iinfo(np.int16).max else bucket
    order = np.argsort(small, kind="stable")
    ends = np.cumsum(np.bincount(bucket, minlength=buckets)).tolist()
    rows = table.take(pa.array(order)).combine_chunks()
    batch = pa.RecordBatch.from_arrays(
        [c.chunk(0) if c.num_chunks == 1 else c.combine_chunks() for c in rows.columns],
        schema=rows.schema,
    )
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
        start = 0
        for end in ends:
            writer.write_batch(batch.slice(start, end - start))
            start = end


def read_bucket(files: list[Path], bucket: int) -> pa.Table:
    """The rows of `bucket` from files written by `split_file`, read (not mapped): only that
    bucket's bytes enter memory; a mapping would map whole page-cache folios around each
    batch, many times the batch in resident memory when there are many files.

    `files`: at least one, all of one schema."""
    batches = []
    for f in files:
        with pa.OSFile(str(f)) as source:
            batches.append(pa.ipc.open_file(source).get_batch(bucket))
    return pa.Table.from_batches(batches)


class LatestBuckets:
    """The latest row per entity of one snapshot, one bucket at a time (see module docstring).

    Built by `spill`; `table(b)` for b in `range(buckets)` partitions the result. The caller
    owns `temp_dir` (created here, the spill inside it) and removes it when done.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        snap: ViewSnapshot,
        as_of_seq: int | None,
        entities_per_bucket: int,
        temp_dir: Path,
    ) -> None:
        """Plan the buckets and spill the view's rows; `entities_per_bucket` >= 1."""
        self._con = con
        self._snap = snap
        self.keys = snap.keys
        self.temp_dir = temp_dir
        temp_dir.mkdir(parents=True, exist_ok=True)
        full = stored_schema(snap.schema)
        self._values = [EVENT_TS, CREATED_TS, SEQ_COLUMN, *snap.features]
        self.schema = pa.schema([full.field(c) for c in (*snap.keys, *self._values)])
        # Rows bound entities from above: a view with many versions per entity gets more,
        # smaller buckets than it needs, never fewer.
        rows = sum(f.rows for f in snap.files) + sum(t.num_rows for t in snap.buffer)
        self.buckets = max(1, min(MAX_BUCKETS, -(-rows // max(1, entities_per_bucket))))
        self._params: dict[str, object] = {}
        self._source, _ = source_sql(
            con, snap, "latest", full.names, Bounds(None, None, as_of_seq), self._params
        )
        self._spill: list[Path] = []
        if self.buckets > 1:
            self._write_spill(full.names, temp_dir / "offline")

    def _write_spill(self, columns: list[str], directory: Path) -> None:
        directory.mkdir()
        cols = ", ".join(quote_ident(c) for c in columns)
        query = (
            f"SELECT {cols}, {bucket_sql(self._snap, self.buckets)} AS {BUCKET_COLUMN} "
            f"FROM {self._source}"
        )
        try:
            reader = self._con.sql(query, params=self._params).to_arrow_reader(SPILL_ROWS)
            for i, batch in enumerate(reader):
                table = pa.Table.from_batches([batch])
                bucket = table.column(BUCKET_COLUMN).to_numpy()
                path = directory / f"chunk-{i:06d}.arrow"
                split_file(table.drop_columns([BUCKET_COLUMN]), bucket, self.buckets, path)
                self._spill.append(path)
        except (duckdb.Error, pa.ArrowException) as exc:
            raise query_error(exc, snapshot_files([self._snap])) from exc

    def bucket_of(self, keys: pa.Array) -> np.ndarray:
        """The bucket of each bucket key (int64 keys or key texts); see `bucket_of`."""
        return bucket_of(self._con, keys, self.buckets)

    @property
    def int_keyed(self) -> bool:
        """True when bucket keys are the int64 key, False when they are key texts."""
        return int_keyed(self._snap)

    def _latest_by_key(self, rows: pa.Table) -> pa.Table:
        """The latest row per key of `rows` (one int64 key, no nulls), sorted by key."""
        ints = [_int64s(rows.column(c)) for c in (self.keys[0], *self._values[:3], ROW_COLUMN)]
        taken = rows.take(pa.array(latest_rows(*ints)))
        return pa.Table.from_arrays(
            [_one_chunk(taken.column(f.name)).cast(f.type) for f in self.schema], schema=self.schema
        )

    @property
    def sorted_by_key(self) -> bool:
        """Whether `table(b)` comes sorted by key (a view with one int64 key, spilled)."""
        return self.int_keyed and self.buckets > 1

    def table(self, bucket: int) -> pa.Table:
        """The latest row of every entity of `bucket`, typed as `schema`: sorted by key when
        `sorted_by_key` (unless the key column holds nulls), else unordered."""
        params: dict[str, object] = {}
        if self.buckets == 1:
            source, params = self._source, self._params
        elif not self._spill:
            return self.schema.empty_table()
        else:
            rows = read_bucket(self._spill, bucket)
            if self.int_keyed and rows.column(self.keys[0]).null_count == 0:
                return self._latest_by_key(rows)
            self._con.register("__rh_bucket_rows", rows)
            source = "__rh_bucket_rows"
        query = latest_sql(source, self._snap.keys, self._values)
        try:
            table = self._con.sql(query, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise query_error(exc, snapshot_files([self._snap])) from exc
        finally:
            if source == "__rh_bucket_rows":
                self._con.unregister(source)
        return pa.Table.from_arrays(
            [table.column(f.name).cast(f.type) for f in self.schema], schema=self.schema
        )


def _int64s(col: pa.ChunkedArray) -> np.ndarray:
    """int64 values of an integer or timestamp column; nulls as the minimum int64."""
    arr = _one_chunk(col)
    if pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.int64())
    if arr.null_count:
        arr = arr.fill_null(np.iinfo(np.int64).min)
    return arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _one_chunk(col: pa.ChunkedArray) -> pa.Array:
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
