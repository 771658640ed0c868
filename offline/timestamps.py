"""Conversions of user timestamps to int64 nanoseconds since the epoch, UTC (naive means UTC).

Pure functions, thread-safe.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from offline.errors import SchemaMismatchError

TS_TYPE = pa.timestamp("ns", tz="UTC")


def scalar_to_ns(value: object, what: str) -> int:
    """int (already ns), datetime (naive = UTC), numpy datetime64 or pandas Timestamp -> int ns."""
    if isinstance(value, bool):
        raise SchemaMismatchError(f"{what} must be a timestamp, got {value!r}")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[ns]").astype(np.int64))
    as_ns = getattr(value, "value", None)  # pandas.Timestamp keeps ns in .value (UTC-based)
    if isinstance(value, dt.datetime) and isinstance(as_ns, int):
        return as_ns
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    raise SchemaMismatchError(
        f"{what} must be a timestamp (datetime, numpy.datetime64 or int ns), got {value!r}"
    )


def array_to_ns(column: pa.ChunkedArray | pa.Array, what: str) -> pa.Array:
    """A timestamp column of any unit (naive = UTC) as an int64 ns Arrow array without nulls."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_timestamp(column.type):
        raise SchemaMismatchError(
            f"{what} must be a timestamp column (any unit; naive means UTC), got {column.type}"
        )
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise SchemaMismatchError(f"{what} is null at row {row}: every row needs a timestamp")
    try:
        as_ns = column.cast(pa.timestamp("ns", tz=column.type.tz))
    except pa.ArrowInvalid as exc:
        raise SchemaMismatchError(f"{what} does not fit in nanoseconds: {exc}") from exc
    return as_ns.cast(pa.int64())


def normalize_timestamp_column(column: pa.ChunkedArray, what: str) -> pa.ChunkedArray:
    """A timestamp (any unit) or int64 ns column as timestamp[ns, UTC]."""
    if pa.types.is_integer(column.type):
        return column.cast(pa.int64()).cast(TS_TYPE)
    if not pa.types.is_timestamp(column.type):
        raise SchemaMismatchError(f"{what} must be a timestamp column, got {column.type}")
    try:
        return column.cast(pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64()).cast(TS_TYPE)
    except pa.ArrowInvalid as exc:
        raise SchemaMismatchError(f"{what} does not fit in nanoseconds: {exc}") from exc
