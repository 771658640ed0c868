"""Field and the fixed-width record layout of a row.

A row's fixed-width part is one record of `rowbytes` bytes (a multiple of 8):

    offset 0   event_ts   int64   |  HEADER_BYTES = 24: on-disk format, do not change
    offset 8   created_ts int64   |
    offset 16  seq        int64   |
    offset 24  valid bitmap, ceil(nfields / 8) bytes, bit i set = field i present
    then each non-string field at its natural alignment, in declaration order.

Strings live outside the record (an Arrow string column beside the records, indexed by the record's
position); the record only carries their valid bit. Because fields are only ever appended, an old
layout converts to a new one by copying fields (`Layout.convert`): appended fields read null.
Keys are uint64, one per row, outside the record (`as_keys` checks them). Immutable; safe to
share between threads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from online.errors import OnlineError

__all__ = ["Field", "Layout", "HEADER_BYTES", "as_keys"]

HEADER_BYTES = 24  # event_ts, created_ts, seq (int64 each) — on-disk format, do not change
_SCALARS: dict[str, tuple[np.dtype, pa.DataType]] = {
    "int32": (np.dtype(np.int32), pa.int32()),
    "int64": (np.dtype(np.int64), pa.int64()),
    "float32": (np.dtype(np.float32), pa.float32()),
    "float64": (np.dtype(np.float64), pa.float64()),
    "bool": (np.dtype(np.bool_), pa.bool_()),
    "timestamp": (np.dtype(np.int64), pa.timestamp("ns", tz="UTC")),
}
_VECTOR = re.compile(r"^float32\[(\d+)\]$")
_BIT_MASKS = [np.array([1 << b], dtype=np.uint8) for b in range(8)]


@dataclass(frozen=True)
class Field:
    """A feature: `name` and `dtype`, one of int32 int64 float32 float64 bool string timestamp
    float32[N] (N >= 1)."""

    name: str
    dtype: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise OnlineError(f"Field name must be a non-empty string, got {self.name!r}")
        if self.dtype not in _SCALARS and self.dtype != "string" and not self.vector_width:
            raise OnlineError(
                f"field {self.name!r}: unknown dtype {self.dtype!r}; expected one of "
                "int32 int64 float32 float64 bool string timestamp float32[N]"
            )

    @property
    def vector_width(self) -> int:
        """N for float32[N], else 0."""
        m = _VECTOR.match(self.dtype) if isinstance(self.dtype, str) else None
        return int(m.group(1)) if m and int(m.group(1)) >= 1 else 0

    @property
    def arrow_type(self) -> pa.DataType:
        if self.dtype == "string":
            return pa.large_string()
        if self.vector_width:
            return pa.list_(pa.float32(), self.vector_width)
        return _SCALARS[self.dtype][1]


class Layout:
    """Offsets of the fields of a schema inside a record (see module docstring)."""

    def __init__(self, fields: Sequence[Field]) -> None:
        names = [f.name for f in fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise OnlineError(f"duplicate field names: {dupes}")
        self.fields: tuple[Field, ...] = tuple(fields)
        self.nfields = len(self.fields)
        self.bitmap_bytes = (self.nfields + 7) // 8
        off = HEADER_BYTES + self.bitmap_bytes
        self.offsets: list[int] = []
        self.sizes: list[int] = []
        names_, offsets = ["event_ts", "created_ts", "seq"], [0, 8, 16]
        formats: list[object] = ["<i8"] * 3
        fmt: object
        for i, f in enumerate(self.fields):
            if f.dtype == "string":
                self.offsets.append(-1)
                self.sizes.append(0)
                continue
            if f.vector_width:
                item, size, fmt = 4, 4 * f.vector_width, (np.float32, (f.vector_width,))
            else:
                dt = _SCALARS[f.dtype][0]
                item, size, fmt = dt.itemsize, dt.itemsize, dt
            off = (off + item - 1) // item * item
            self.offsets.append(off)
            self.sizes.append(size)
            names_.append(f"f{i}")
            formats.append(fmt)
            offsets.append(off)
            off += size
        self.rowbytes = max(8, (off + 7) // 8 * 8)
        self.rowwords = self.rowbytes // 8
        self.struct = np.dtype(
            {"names": names_, "formats": formats, "offsets": offsets, "itemsize": self.rowbytes}
        )
        in_record: Mapping[str, tuple] = self.struct.fields or {}
        # per field, its dtype inside the record (strings, which are not in it: object)
        self.dtypes: list[np.dtype] = [
            in_record[f"f{i}"][0] if f"f{i}" in in_record else np.dtype(object)
            for i in range(self.nfields)
        ]
        self.index = {f.name: i for i, f in enumerate(self.fields)}
        self.string_fields = [i for i, f in enumerate(self.fields) if f.dtype == "string"]

    def field_index(self, name: str) -> int:
        try:
            return self.index[name]
        except KeyError:
            raise OnlineError(
                f"unknown feature {name!r}; the tree has {[f.name for f in self.fields]}"
            ) from None

    # ---- building records -------------------------------------------------------------------

    def pack(
        self,
        event_ts: np.ndarray,
        created_ts: np.ndarray,
        seq: int,
        features: pa.RecordBatch | pa.Table,
    ) -> tuple[np.ndarray, dict[int, pa.Array]]:
        """Pack a batch into records.

        Returns (records: (n, rowwords) int64, strings: {field index: large_string array}).
        Raises OnlineError naming the column when a field is missing or has the wrong type.

        features: validated by store.batch.convert_batch when they come from the store (the one
        owner of the rules); only the column's presence and Arrow type are checked here.
        """
        n = len(event_ts)
        if features.num_rows != n:
            raise OnlineError(f"features have {features.num_rows} rows but keys have {n}")
        rec = np.zeros(n, dtype=self.struct)
        rec["event_ts"] = event_ts
        rec["created_ts"] = created_ts
        rec["seq"] = seq
        valid = np.zeros((n, max(1, self.bitmap_bytes * 8)), dtype=np.bool_)
        strings: dict[int, pa.Array] = {}
        cols = set(features.schema.names)
        for i, f in enumerate(self.fields):
            if f.name not in cols:
                raise OnlineError(f"features lack column {f.name!r} (dtype {f.dtype})")
            col = features.column(f.name)
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
            valid[:, i] = _validity(col)
            if f.dtype == "string":
                strings[i] = _strings(col, f)
            else:
                rec[f"f{i}"] = _values(col, f, n)
        u8 = rec.view(np.uint8).reshape(n, self.rowbytes)
        if self.bitmap_bytes:
            bits = np.packbits(valid, axis=1, bitorder="little")[:, : self.bitmap_bytes]
            u8[:, HEADER_BYTES : HEADER_BYTES + self.bitmap_bytes] = bits
        return rec.view(np.int64).reshape(n, self.rowwords), strings

    # ---- reading records --------------------------------------------------------------------

    def values(self, records: np.ndarray, name: str) -> np.ndarray:
        """Copy of field `name` from C-contiguous (n, rowwords) int64 records; see
        LookupResult.values. (A strided view straight into the buffer: the serving path calls
        this per feature for a single row, where numpy's structured-dtype machinery costs more
        than the lookup.)"""
        i = self.field_index(name)
        f = self.fields[i]
        if f.dtype == "string":
            raise OnlineError(f"field {name!r} is a string; it is not stored in the record")
        n = records.shape[0]
        dt = self.dtypes[i]
        shape: tuple[int, ...]
        strides: tuple[int, ...]
        if dt.subdtype is not None:  # float32[N]
            shape, strides, dt = (n, dt.shape[0]), (self.rowbytes, 4), dt.base
        else:
            shape, strides = (n,), (self.rowbytes,)
        if n == 0:
            return np.zeros(shape, dtype=dt)
        return np.ndarray(shape, dt, records, self.offsets[i], strides).copy()

    def valid(self, records: np.ndarray, name: str) -> np.ndarray:
        """Valid bits of field `name`: (n,) bool."""
        i = self.field_index(name)
        n = records.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.bool_)
        byte = np.ndarray((n,), np.uint8, records, HEADER_BYTES + i // 8, (self.rowbytes,))
        # an array operand keeps numpy off its slow Python-scalar promotion path
        return np.bitwise_and(byte, _BIT_MASKS[i % 8]).astype(np.bool_)

    def convert(self, old: Layout, records: np.ndarray) -> np.ndarray:
        """Records of the older layout `old` (whose fields are a prefix of ours) in this layout."""
        if old.fields != self.fields[: old.nfields]:
            raise OnlineError("cannot convert records: the old fields are not a prefix of the new")
        n = records.shape[0]
        src = records.view(np.uint8)
        out = np.zeros((n, self.rowbytes), dtype=np.uint8)
        out[:, : HEADER_BYTES + old.bitmap_bytes] = src[:, : HEADER_BYTES + old.bitmap_bytes]
        for i in range(old.nfields):
            if old.sizes[i]:
                a, b = old.offsets[i], self.offsets[i]
                out[:, b : b + old.sizes[i]] = src[:, a : a + old.sizes[i]]
        return out.view(np.int64).reshape(n, self.rowwords)

    def to_json(self) -> list[list[str]]:
        return [[f.name, f.dtype] for f in self.fields]


def _validity(col: pa.Array) -> np.ndarray:
    if col.null_count == 0:
        return np.ones(len(col), dtype=np.bool_)
    return col.is_valid().to_numpy(zero_copy_only=False)


def _type_error(f: Field, col: pa.Array) -> OnlineError:
    return OnlineError(f"column {f.name!r}: expected {f.dtype}, got Arrow type {col.type}")


def _values(col: pa.Array, f: Field, n: int) -> np.ndarray:
    t = col.type
    if f.vector_width:
        w = f.vector_width
        if not (pa.types.is_fixed_size_list(t) and t.list_size == w) and not (
            pa.types.is_list(t) or pa.types.is_large_list(t)
        ):
            raise _type_error(f, col)
        if not pa.types.is_fixed_size_list(t):
            col = col.cast(pa.list_(pa.float32(), w))
        child = col.values.slice(col.offset * w, n * w)
        if not pa.types.is_float32(child.type):
            child = child.cast(pa.float32())
        vals = _numpy(child, 0)
        return vals.reshape(n, w)
    if f.dtype == "bool":
        if not pa.types.is_boolean(t):
            raise _type_error(f, col)
        return _numpy(col, False)
    if f.dtype == "timestamp":
        if pa.types.is_timestamp(t):
            if t.unit != "ns":
                col = col.cast(pa.timestamp("ns", tz=t.tz))
            col = col.view(pa.int64())
        elif not pa.types.is_int64(t):
            raise _type_error(f, col)
        return _numpy(col, 0)
    want = _SCALARS[f.dtype][1]
    if t != want:
        ok = (pa.types.is_integer(t) and pa.types.is_integer(want)) or (
            pa.types.is_floating(want) and (pa.types.is_floating(t) or pa.types.is_integer(t))
        )
        if not ok:
            raise _type_error(f, col)
        try:
            col = col.cast(want)
        except pa.ArrowInvalid as e:
            raise OnlineError(f"column {f.name!r}: cannot convert to {f.dtype}: {e}") from None
    return _numpy(col, 0)


def _numpy(col: pa.Array, fill: object) -> np.ndarray:
    """Values with nulls replaced by `fill` (zero copy when there are no nulls)."""
    if col.null_count:
        col = col.fill_null(fill)
    return col.to_numpy(zero_copy_only=False)


def _strings(col: pa.Array, f: Field) -> pa.Array:
    if pa.types.is_large_string(col.type):
        return col
    if not pa.types.is_string(col.type):
        raise _type_error(f, col)
    return col.cast(pa.large_string())


def as_keys(keys: np.ndarray) -> np.ndarray:
    """keys as a 1-D, C-contiguous, writable uint64 array (the kernels' one signature): `keys`
    itself when it already is one, else a converted copy; OnlineError for other shapes, dtypes
    or negative integers."""
    if type(keys) is np.ndarray and keys.dtype == np.uint64 and keys.ndim == 1:
        f = keys.flags
        if f.c_contiguous and f.writeable:
            return keys
    a = np.asarray(keys)
    if a.ndim != 1:
        raise OnlineError(f"keys must be a 1-D array, got shape {a.shape}")
    if a.dtype != np.uint64:
        if a.dtype.kind not in "iu" and len(a):
            raise OnlineError(f"keys must be uint64, got dtype {a.dtype}")
        if a.dtype.kind == "i" and len(a) and a.min() < 0:
            raise OnlineError("keys must be uint64; got negative integers")
        a = a.astype(np.uint64)
    if not a.flags.c_contiguous or not a.flags.writeable:
        a = a.copy()
    return a
