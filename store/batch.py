"""Batch validation and conversion: user data -> a view's Arrow schema, or a ValidationError.

`convert_batch(view, data)` accepts a pyarrow Table or RecordBatch, a pandas DataFrame, or a
dict of columns (lists as JSON gives them: ISO timestamp strings with naive = UTC, numbers as
strings for int columns). A timestamp given as a number (int or float, in any input) is Unix
epoch seconds, as Feast's clients send a UnixTimestamp; Arrow and pandas timestamp types keep
their own unit (text and numbers are parsed by store/timestamps.py). It validates the whole
batch before anything is written: unknown or missing columns, wrong types, nulls in keys or
timestamps, vectors of the wrong length, invalid Arrow data. Errors name the view, the column
and the 0-based row. Pure functions; safe from any thread.

This is the one validation of a batch. The layers below (the write path, the commit log, the
online and offline engines) state "batch: validated by store.batch.convert_batch" and trust it;
app/ calls FeatureStore.ingest and does not validate again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from store.definitions import FeatureView
from store.dtypes import TIMESTAMP, arrow_type, vector_dim
from store.errors import ValidationError
from store.timestamps import from_epoch_seconds, parse_iso8601

EVENT_TS = "event_timestamp"
CREATED_TS = "created_timestamp"
_ARROW_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    TypeError,
    ValueError,
    OverflowError,
)


def store_schema(view: FeatureView) -> pa.Schema:
    """The schema of a converted batch: keys, event_timestamp, created_timestamp, features."""
    fields = [pa.field(k, arrow_type(t), nullable=False) for k, t in view.keys]
    fields.append(pa.field(EVENT_TS, TIMESTAMP, nullable=False))
    fields.append(pa.field(CREATED_TS, TIMESTAMP, nullable=False))
    fields.extend(pa.field(f.name, arrow_type(f.dtype)) for f in view.features)
    return pa.schema(fields)


def _columns(view: FeatureView, data: Any) -> dict[str, Any]:
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        return {name: data.column(i) for i, name in enumerate(data.column_names)}
    if isinstance(data, pd.DataFrame):
        if len(set(data.columns)) != len(data.columns):
            raise ValidationError(
                f"view {view.name!r}: the data repeats a column name", view=view.name
            )
        return {str(c): data[c] for c in data.columns}
    if isinstance(data, Mapping):
        return {str(k): v for k, v in data.items()}
    raise ValidationError(
        f"view {view.name!r}: expected a pyarrow Table/RecordBatch, a pandas DataFrame or a dict "
        f"of columns, got {type(data).__name__}",
        view=view.name,
    )


def convert_batch(view: FeatureView, data: Any) -> tuple[pa.Table, np.ndarray | None]:
    """Validate and convert `data`: (table of store_schema(view), rows lacking a created time).

    The second value is None when every row carries its created timestamp (the view's
    created_timestamp_field, or a `created` column); else a bool mask of the rows (all of them
    when there is no such column) whose created_timestamp holds 0 for the caller to fill with
    the ingest time. A null created value is "not given", as Feast clients send it.

    Every refusal is a ValidationError, and nothing invalid comes out: the converted columns
    are validated in full, since a column of invalid Arrow data (a string that is not UTF-8, a
    buffer shorter than declared: a damaged IPC stream) would otherwise reach the commit log and
    fail at apply, failing the store and every replay.
    """
    if isinstance(data, pa.Table | pa.RecordBatch):
        dup = repeated_name(data.schema.names)
        if dup is not None:
            raise ValidationError(
                f"view {view.name!r}: the data repeats column {dup!r}", view=view.name, column=dup
            )
    try:
        table, missing_created = _convert_columns(view, data)
    except ValidationError:
        raise
    except _ARROW_ERRORS + (pa.ArrowException,) as e:  # still bad input, never a server fault
        raise ValidationError(
            f"view {view.name!r}: the batch cannot be converted to the view's types: {e}",
            view=view.name,
        ) from None
    for name, column in zip(table.column_names, table.columns, strict=True):
        try:
            column.validate(full=True)
        except pa.ArrowException as e:
            raise ValidationError(
                f"view {view.name!r}, column {name!r}: invalid Arrow data ({e})",
                view=view.name,
                column=name,
            ) from None
    for f in view.features:
        if vector_dim(f.dtype) is not None:
            _check_vector_elements(view, f.name, table.column(f.name).combine_chunks())
    return table, missing_created


def repeated_name(names: list[str]) -> str | None:
    """The first column name that `names` holds twice, or None (Arrow tables allow repeats)."""
    seen: set[str] = set()
    for n in names:
        if n in seen:
            return n
        seen.add(n)
    return None


def _check_vector_elements(view: FeatureView, name: str, column: pa.Array) -> None:
    """A vector is null as a whole or holds numbers only. A null element (JSON null, or a NaN
    that pandas turned into null) has no online representation: the online store would read it
    as 0.0 while the offline store keeps null, and the two would disagree."""
    flat = pc.list_flatten(column)  # the elements of the non-null vectors
    if not flat.null_count:
        return
    first = int(np.flatnonzero(np.asarray(flat.is_null()))[0])
    row = int(pc.list_parent_indices(column)[first].as_py())
    raise ValidationError(
        f"view {view.name!r}, column {name!r}, row {row}: a vector holds a null element (NaN in "
        "a pandas list reads as null); send numbers only, or null for the whole vector",
        view=view.name,
        column=name,
        row=row,
    )


def _convert_columns(view: FeatureView, data: Any) -> tuple[pa.Table, np.ndarray | None]:
    cols = _columns(view, data)
    created_name = view.created_timestamp_field or "created"
    expected = [*view.join_keys, view.timestamp_field, *(f.name for f in view.features)]
    unknown = [c for c in cols if c not in expected and c not in (created_name, CREATED_TS)]
    if unknown:
        raise ValidationError(
            f"view {view.name!r}: unknown column(s) {unknown}; the view has {expected}",
            view=view.name,
            column=unknown[0],
        )
    missing = [c for c in expected if c not in cols]
    if missing:
        raise ValidationError(
            f"view {view.name!r}: missing column(s) {missing}", view=view.name, column=missing[0]
        )
    n = _length(view, cols)
    out: dict[str, pa.Array] = {}
    for key, dtype in view.keys:
        out[key] = _convert(view, key, cols[key], dtype, n, nullable=False)
    out[EVENT_TS] = _convert(
        view, view.timestamp_field, cols[view.timestamp_field], "timestamp", n, nullable=False
    )
    created_col = (
        created_name if created_name in cols else (CREATED_TS if CREATED_TS in cols else None)
    )
    no_created: np.ndarray | None = np.ones(n, dtype=bool)
    if created_col is not None:
        created = _convert(view, created_col, cols[created_col], "timestamp", n, nullable=True)
        if created.null_count:
            no_created = np.asarray(created.is_null())
            created = created.fill_null(pa.scalar(0, TIMESTAMP))
        else:
            no_created = None
        out[CREATED_TS] = created
    else:
        out[CREATED_TS] = pa.array(np.zeros(n, dtype=np.int64)).cast(TIMESTAMP)
    for f in view.features:
        out[f.name] = _convert(view, f.name, cols[f.name], f.dtype, n, nullable=True)
    return pa.Table.from_arrays(list(out.values()), schema=store_schema(view)), no_created


def _length(view: FeatureView, cols: dict[str, Any]) -> int:
    lengths = {name: len(v) for name, v in cols.items()}
    n = next(iter(lengths.values()), 0)
    bad = [name for name, m in lengths.items() if m != n]
    if bad:
        raise ValidationError(
            f"view {view.name!r}: columns have unequal lengths {lengths}",
            view=view.name,
            column=bad[0],
        )
    return n


def _fail(view: FeatureView, column: str, row: int | None, what: str) -> ValidationError:
    where = f", row {row}" if row is not None else ""
    return ValidationError(
        f"view {view.name!r}, column {column!r}{where}: {what}",
        view=view.name,
        column=column,
        row=row,
    )


def _convert(
    view: FeatureView, column: str, values: Any, dtype: str, n: int, nullable: bool
) -> pa.Array:
    target = arrow_type(dtype)
    arr = _as_arrow(values, dtype)
    if arr is None:  # python objects arrow could not type: convert one by one to locate errors
        arr = _from_python(view, column, list(values), dtype, target)
    try:
        out = _cast(arr, dtype, target)
    except _ARROW_ERRORS as e:
        row = _first_bad_row(arr, lambda a: _cast(a, dtype, target))
        raise _fail(
            view, column, row, f"cannot convert to {dtype}: {e}{_hint(dtype, _is_number(arr.type))}"
        ) from None
    if out.null_count and not nullable:
        row = int(np.flatnonzero(np.asarray(out.is_null()))[0])
        raise _fail(view, column, row, "must not be null (join keys and timestamps never are)")
    return out


def _as_arrow(values: Any, dtype: str) -> pa.Array | None:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values, pa.Array):
        return values
    dim = vector_dim(dtype)
    if isinstance(values, np.ndarray) and values.ndim == 2 and dim is not None:
        flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).ravel())
        return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    if isinstance(values, pd.Series) and dtype == "timestamp" and values.dtype == object:
        return None
    try:
        # pandas marks missing floats with NaN; other inputs keep NaN as a value
        arr = pa.array(values, from_pandas=isinstance(values, pd.Series))
    except _ARROW_ERRORS:
        return None
    if pa.types.is_timestamp(arr.type) and arr.type.unit == "us" and _has_nanos(values):
        # pyarrow reads pandas Timestamps in a list as datetimes, dropping their nanoseconds
        # (.value is ns since the epoch: UTC for aware values, the wall time for naive = UTC)
        ns = [None if v is None else pd.Timestamp(v).value for v in values]
        return pa.array(ns, pa.int64()).cast(TIMESTAMP)
    return arr


def _has_nanos(values: Any) -> bool:
    return isinstance(values, list | tuple) and any(
        isinstance(v, pd.Timestamp) and v.nanosecond for v in values
    )


def _cast(arr: pa.Array, dtype: str, target: pa.DataType) -> pa.Array:
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), target)
    if dtype == "timestamp":
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return parse_iso8601(arr)
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            return arr.cast(target)
        if _is_number(t):
            return from_epoch_seconds(arr)
        raise TypeError(f"expected timestamps, got {t}")
    if dtype == "string":
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
            return arr.cast(target)
        raise TypeError(f"expected strings, got {t}")
    if dtype == "bool":
        if pa.types.is_boolean(t):
            return arr
        raise TypeError(f"expected booleans, got {t}")
    if dtype in ("int32", "int64"):
        if pa.types.is_boolean(t):
            raise TypeError(f"expected integers, got {t}")
        return arr.cast(target)  # safe: refuses overflow and fractions; parses numeric strings
    if dtype in ("float32", "float64"):
        if pa.types.is_boolean(t):
            raise TypeError(f"expected numbers, got {t}")
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            return arr.cast(target, safe=False)
        return arr.cast(target)
    dim = vector_dim(dtype)
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        if not pa.types.is_fixed_size_list(t):
            lengths = pc.list_value_length(arr).fill_null(dim)
            if not pc.all(pc.equal(lengths, dim)).as_py():
                raise ValueError(f"expected vectors of length {dim}")
        return arr.cast(target)
    raise TypeError(f"expected vectors of {dim} float32, got {t}")


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _hint(dtype: str, number: bool) -> str:
    """What a refused number in a timestamp column most likely meant."""
    if dtype == "timestamp" and number:
        return (
            " (a number in a timestamp column is Unix epoch seconds; for nanoseconds pass a "
            "timestamp type, e.g. pyarrow timestamp('ns') or pandas datetime64[ns])"
        )
    return ""


def _first_bad_row(arr: pa.Array, cast: Callable[[pa.Array], pa.Array]) -> int | None:
    for i in range(len(arr)):
        try:
            cast(arr.slice(i, 1))
        except _ARROW_ERRORS:
            return i
    return None


def _from_python(
    view: FeatureView, column: str, values: list, dtype: str, target: pa.DataType
) -> pa.Array:
    out = []
    for i, v in enumerate(values):
        try:
            out.append(_cast(pa.array([v]), dtype, target))
        except _ARROW_ERRORS as e:
            # (from the value: pyarrow may not even hold it, an int of 2^64 say)
            hint = _hint(dtype, isinstance(v, int | float) and not isinstance(v, bool))
            raise _fail(view, column, i, f"cannot convert {v!r} to {dtype}: {e}{hint}") from None
    return pa.concat_arrays(out) if out else pa.array([], target)
