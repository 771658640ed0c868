"""Reading user files (Parquet, CSV) into Arrow tables typed by the applied definitions.

CSV has no types: columns are read as the view's dtypes (join keys by their entity, features by
their dtype) and timestamps as text, then parsed as ISO 8601 (naive = UTC). Vectors
(`float32[N]`) cannot be written in CSV; use Parquet or Arrow for them. Pure functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from app.catalog import Catalog, ViewInfo

SCALAR_TYPES = {
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
}
TIMESTAMP_COLUMNS = ("event_timestamp", "created", "created_timestamp")


class FileFormatError(ValueError):
    """A file cannot be read as asked; the message names the file and column."""


def parse_timestamps(column: pa.ChunkedArray | pa.Array, where: str) -> pa.Array:
    """Text or naive timestamps -> timestamp[ns, UTC]; naive values are taken as UTC."""
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            column = pa.compute.assume_timezone(column, "UTC")
        return column.cast(pa.timestamp("ns", tz="UTC"))
    try:
        parsed = pd.to_datetime(column.to_pandas(), utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise FileFormatError(f"{where}: not ISO 8601 timestamps ({exc})") from None
    return pa.array(parsed).cast(pa.timestamp("ns", tz="UTC"))


def _csv_types(view: ViewInfo | None, catalog: Catalog) -> dict[str, pa.DataType]:
    types: dict[str, pa.DataType] = {
        key: SCALAR_TYPES.get(dtype, pa.string()) for key, dtype in catalog.key_dtypes.items()
    }
    if view is not None:
        for name, dtype in view.features.items():
            types[name] = SCALAR_TYPES.get(dtype, pa.string())
    for name in TIMESTAMP_COLUMNS:
        types[name] = pa.string()
    return types


def read_csv(path: Path, catalog: Catalog, view: ViewInfo | None) -> pa.Table:
    """A CSV file typed for `view` (or only by join keys when None); timestamps parsed."""
    try:
        table = pacsv.read_csv(
            path, convert_options=pacsv.ConvertOptions(column_types=_csv_types(view, catalog))
        )
    except pa.ArrowInvalid as exc:
        raise FileFormatError(f"{path}: {exc}") from None
    timestamp_columns = set(TIMESTAMP_COLUMNS)
    if view is not None:
        timestamp_columns |= {n for n, d in view.features.items() if d == "timestamp"}
        timestamp_columns.add(view.timestamp_field)
        for name, dtype in view.features.items():
            if dtype.startswith("float32[") and name in table.column_names:
                raise FileFormatError(
                    f"{path}: column {name!r} is a vector ({dtype}); CSV cannot hold vectors, "
                    "use Parquet"
                )
    for name in timestamp_columns & set(table.column_names):
        i = table.column_names.index(name)
        table = table.set_column(i, name, parse_timestamps(table.column(name), f"{path}: {name!r}"))
    return table


def batches(
    path: Path, catalog: Catalog, view: ViewInfo | None, batch_rows: int
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
        table = read_csv(path, catalog, view)
        return table.num_rows, (
            table.slice(i, batch_rows) for i in range(0, table.num_rows, batch_rows)
        )
    raise FileFormatError(f"{path}: unsupported file type {suffix!r}; use .parquet or .csv")


def read_entities(path: Path, catalog: Catalog) -> pa.Table:
    """An entity file (Parquet or CSV): join keys typed by their entity, timestamps parsed."""
    total, parts = batches(path, catalog, None, 1 << 30)
    tables = list(parts)
    table = pa.concat_tables(tables) if tables else pa.table({})
    if "event_timestamp" in table.column_names:
        i = table.column_names.index("event_timestamp")
        table = table.set_column(
            i, "event_timestamp", parse_timestamps(table.column("event_timestamp"), str(path))
        )
    return table
