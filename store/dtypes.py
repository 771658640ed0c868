"""Feature dtypes of the definitions and their Arrow and online representations.

A dtype is one of the strings `int32 int64 float32 float64 bool string timestamp float32[N]`
(INTERNAL_API.md). Pure functions; safe from any thread.
"""

from __future__ import annotations

import re

import pyarrow as pa

from store.errors import DefinitionError

TIMESTAMP = pa.timestamp("ns", tz="UTC")
SCALAR_TYPES: dict[str, pa.DataType] = {
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "timestamp": TIMESTAMP,
}
KEY_DTYPES = ("int64", "string")
_VECTOR = re.compile(r"float32\[([0-9]+)\]")  # fullmatch: "$" would take "float32[3]\n"
MAX_VECTOR_DIM = 65536


def vector_dim(dtype: str) -> int | None:
    """The N of `float32[N]`, or None for a scalar dtype."""
    m = _VECTOR.fullmatch(dtype)
    return int(m.group(1)) if m else None


def check_dtype(dtype: object, where: str) -> str:
    """Return `dtype` if it names a supported feature type, else raise DefinitionError."""
    if isinstance(dtype, str):
        if dtype in SCALAR_TYPES:
            return dtype
        n = vector_dim(dtype)
        if n is not None and 1 <= n <= MAX_VECTOR_DIM:
            return dtype
    raise DefinitionError(
        f"{where}: unsupported dtype {dtype!r}; use one of "
        "int32, int64, float32, float64, bool, string, timestamp, float32[N]"
    )


def row_bytes(dtype: str) -> int:
    """Bytes a value of `dtype` takes in an online record (a string: its 8-byte reference)."""
    dim = vector_dim(dtype)
    if dim is not None:
        return 4 * dim
    return {"int32": 4, "float32": 4, "bool": 1}.get(dtype, 8)


def arrow_type(dtype: str) -> pa.DataType:
    """The Arrow type that a column of `dtype` has inside the store."""
    t = SCALAR_TYPES.get(dtype)
    if t is not None:
        return t
    n = vector_dim(dtype)
    if n is None:
        raise DefinitionError(f"unsupported dtype {dtype!r}")
    return pa.list_(pa.float32(), n)
