"""The CLI's input files (Parquet, CSV) read into Arrow tables typed by the applied definitions.

CSV has no types: columns are read as the view's dtypes (join keys by their entity, features by
their dtype; store/dtypes.py) and timestamps as text, then parsed by the store's one ISO 8601
parser (naive = UTC). Vectors (`float32[N]`) cannot be written in CSV; use Parquet or Arrow for
them. Parquet keeps its own types; the store converts and validates every batch on ingest.
Pure functions; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from store.definitions import Definitions, FeatureView
from store.dtypes import SCALAR_TYPES, vector_dim
from store.timestamps import parse_iso8601, to_utc

TIMESTAMP_COLUMNS = ("event_timestamp", "created", "created_timestamp")


class FileFormatError(ValueError):
    """A file cannot be read as asked; the message names the file and column."""


def parse_timestamps(column: pa.ChunkedArray | pa.Array, where: str) -> pa.Array:
    """Text or naive timestamps -> timestamp[ns, UTC]; naive values are taken as UTC."""
    try:
        if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
            return to_utc(column)
        return parse_iso8601(column)
    except (ValueError, pa.ArrowInvalid) as exc:
        raise FileFormatError(f"{where}: not ISO 8601 timestamps ({exc})") from None


def _csv_type(dtype: str) -> pa.DataType:
    """How a CSV column of `dtype` is read: scalars as their type, timestamps as text."""
    return pa.string() if dtype == "timestamp" else SCALAR_TYPES.get(dtype, pa.string())


def _csv_types(defs: Definitions, view: FeatureView | None) -> dict[str, pa.DataType]:
    types: dict[str, pa.DataType] = {
        key: _csv_type(e.dtype) for e in defs.entities.values() for key in e.join_keys
    }
    if view is not None:
        for f in view.features:
            types[f.name] = _csv_type(f.dtype)
    for name in TIMESTAMP_COLUMNS:
        types[name] = pa.string()
    return types


def read_csv(path: Path, defs: Definitions, view: FeatureView | None) -> pa.Table:
    """A CSV file typed for `view` (or only by join keys when None); timestamps parsed."""
    try:
        table = pacsv.read_csv(
            path, convert_options=pacsv.ConvertOptions(column_types=_csv_types(defs, view))
        )
    except pa.ArrowInvalid as exc:
        raise FileFormatError(f"{path}: {exc}") from None
    timestamp_columns = set(TIMESTAMP_COLUMNS)
    if view is not None:
        timestamp_columns |= {f.name for f in view.features if f.dtype == "timestamp"}
        timestamp_columns.add(view.timestamp_field)
        for f in view.features:
            if vector_dim(f.dtype) is not None and f.name in table.column_names:
                raise FileFormatError(
                    f"{path}: column {f.name!r} is a vector ({f.dtype}); CSV cannot hold "
                    "vectors, use Parquet"
                )
    for name in timestamp_columns & set(table.column_names):
        i = table.column_names.index(name)
        table = table.set_column(i, name, parse_timestamps(table.column(name), f"{path}: {name!r}"))
    return table


def batches(
    path: Path, defs: Definitions, view: FeatureView | None, batch_rows: int
) -> tuple[int, Iterator[pa.Table]]:
    """(total rows, batches of at most `batch_rows`) of a Parquet or CSV file."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise FileFormatError(f"{path}: not a readable Parquet file ({exc})") from None

        def parquet_batches() -> Iterator[pa.Table]:
            for batch in pf.iter_batches(batch_size=batch_rows):
                yield pa.Table.from_batches([batch])

        return pf.metadata.num_rows, parquet_batches()
    if suffix == ".csv":
        table = read_csv(path, defs, view)
        return table.num_rows, (
            table.slice(i, batch_rows) for i in range(0, table.num_rows, batch_rows)
        )
    raise FileFormatError(f"{path}: unsupported file type {suffix!r}; use .parquet or .csv")


def read_entities(path: Path, defs: Definitions) -> pa.Table:
    """An entity file (Parquet or CSV): join keys typed by their entity, timestamps parsed."""
    _total, parts = batches(path, defs, None, 1 << 30)
    tables = list(parts)
    table = pa.concat_tables(tables) if tables else pa.table({})
    if "event_timestamp" in table.column_names:
        i = table.column_names.index("event_timestamp")
        table = table.set_column(
            i, "event_timestamp", parse_timestamps(table.column("event_timestamp"), str(path))
        )
    return table
