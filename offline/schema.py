"""View schemas: normalization, allowed evolution, and conforming appended batches to them.

A view's user schema is: its key columns (int64 or string), `event_timestamp`,
`created_timestamp` (timestamp ns UTC) and its features. Stored rows add `_seq` (int64, the
batch's commit sequence) and `_row` (int32, position within the batch). Pure functions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from offline.errors import SchemaMismatchError
from offline.names import CREATED_TS, EVENT_TS, ROW_COLUMN, SEQ_COLUMN, check_column
from offline.timestamps import TS_TYPE, normalize_timestamp_column

SEQ_TYPE = pa.int64()
ROW_TYPE = pa.int32()
_SIMPLE = {pa.int32(), pa.int64(), pa.float32(), pa.float64(), pa.bool_(), pa.string()}


def _feature_type(view: str, field: pa.Field) -> pa.DataType:
    t = field.type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_timestamp(t):
        return TS_TYPE
    if t in _SIMPLE:
        return t
    if pa.types.is_fixed_size_list(t) and t.value_type == pa.float32():
        return pa.list_(pa.float32(), t.list_size)
    raise SchemaMismatchError(
        f"view {view!r}: feature {field.name!r} has unsupported type {t}; use int32, int64, "
        "float32, float64, bool, string, timestamp or fixed_size_list<float32>"
    )


def _key_type(view: str, field: pa.Field) -> pa.DataType:
    t = field.type
    if t == pa.int64():
        return t
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pa.string()
    raise SchemaMismatchError(f"view {view!r}: key {field.name!r} must be int64 or string, got {t}")


def normalize_schema(view: str, schema: pa.Schema, keys: list[str]) -> pa.Schema:
    """Validate and normalize: keys first, then the two timestamps, then features in order."""
    if not keys:
        raise SchemaMismatchError(f"view {view!r} needs at least one key column")
    names = schema.names
    if len(set(names)) != len(names):
        raise SchemaMismatchError(f"view {view!r}: schema has duplicate column names {names}")
    if len(set(keys)) != len(keys):
        raise SchemaMismatchError(f"view {view!r}: duplicate keys {keys}")
    fields = []
    for key in keys:
        check_column(key, f"view {view!r} key")
        if key not in names:
            raise SchemaMismatchError(f"view {view!r}: key column {key!r} is not in the schema")
        fields.append(pa.field(key, _key_type(view, schema.field(key)), nullable=False))
    for ts in (EVENT_TS, CREATED_TS):
        if ts not in names:
            raise SchemaMismatchError(f"view {view!r}: schema lacks the {ts!r} column")
        t = schema.field(ts).type
        if not (pa.types.is_timestamp(t) or t == pa.int64()):
            raise SchemaMismatchError(f"view {view!r}: {ts!r} must be a timestamp, got {t}")
        fields.append(pa.field(ts, TS_TYPE, nullable=False))
    for field in schema:
        if field.name in keys or field.name in (EVENT_TS, CREATED_TS):
            continue
        check_column(field.name, f"view {view!r} feature")
        fields.append(pa.field(field.name, _feature_type(view, field)))
    return pa.schema(fields)


def check_evolution(view: str, old: pa.Schema, new: pa.Schema) -> None:
    """Allow only appending features; raise SchemaMismatchError naming the first difference."""
    for i, old_field in enumerate(old):
        if i >= len(new) or new.field(i).name != old_field.name:
            raise SchemaMismatchError(
                f"view {view!r}: column {old_field.name!r} was removed, renamed or moved; "
                "only appending new features is allowed"
            )
        if new.field(i).type != old_field.type:
            raise SchemaMismatchError(
                f"view {view!r}: column {old_field.name!r} changes type from {old_field.type} "
                f"to {new.field(i).type}; create a new view instead"
            )


def stored_schema(schema: pa.Schema) -> pa.Schema:
    """The Parquet/buffer schema: user columns plus `_seq` and `_row`."""
    return schema.append(pa.field(SEQ_COLUMN, SEQ_TYPE, nullable=False)).append(
        pa.field(ROW_COLUMN, ROW_TYPE, nullable=False)
    )


def pad_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in order; columns it lacks (features added later) null."""
    if table.schema.equals(schema):
        return table
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def conform_batch(
    view: str, schema: pa.Schema, keys: tuple[str, ...], data: pa.Table | pa.RecordBatch, seq: int
) -> pa.Table:
    """An appended batch cast to the stored schema, `_seq` and `_row` added.

    Raises SchemaMismatchError naming the column for a missing or extra column, a type that
    does not cast, or a null key or timestamp. Missing features read null.

    Contract with the store: its batches are validated by store.batch.convert_batch (the one
    owner of the rules: types, casts, nulls, timestamps), so for them nothing here casts and the
    null checks read Arrow's null counts: O(1) guards for direct users of the offline store.
    """
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    if not isinstance(table, pa.Table):
        raise SchemaMismatchError(f"view {view!r}: append needs an Arrow table or record batch")
    extra = set(table.column_names) - set(schema.names)
    if extra:
        raise SchemaMismatchError(f"view {view!r}: batch has unknown columns {sorted(extra)}")
    n = table.num_rows
    columns = []
    for field in schema:
        name = field.name
        if name not in table.column_names:
            if name in keys or name in (EVENT_TS, CREATED_TS):
                raise SchemaMismatchError(f"view {view!r}: batch lacks column {name!r}")
            columns.append(pa.chunked_array([pa.nulls(n, field.type)]))
            continue
        col = table.column(name)
        if name in keys or name in (EVENT_TS, CREATED_TS):
            if col.null_count:
                row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
                raise SchemaMismatchError(f"view {view!r}: column {name!r} is null at row {row}")
        try:
            if field.type == TS_TYPE and col.type != TS_TYPE:
                col = normalize_timestamp_column(col, f"view {view!r} column {name!r}")
            elif col.type != field.type:
                col = col.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaMismatchError(
                f"view {view!r}: column {name!r} of type {col.type} does not convert to "
                f"{field.type}: {exc}"
            ) from exc
        columns.append(col)
    columns.append(pa.chunked_array([np.full(n, seq, dtype=np.int64)]))
    columns.append(pa.chunked_array([np.arange(n, dtype=np.int32)]))
    return pa.Table.from_arrays(columns, schema=stored_schema(schema))
