"""Entity input of online reads -> one numpy array (int64) or list (str) per join key.

Accepts columnar `{join_key: [values]}` or a list of `{join_key: value}` rows. Int keys may come
as strings ("1001", as JSON clients send them). Errors are EntityKeyError naming the join key
and row. Pure functions; the fast path (ints in lists) is one np.asarray per key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from store.errors import EntityKeyError


def parse_entities(
    entities: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    join_keys: Sequence[tuple[str, str]],
) -> tuple[dict[str, Any], int]:
    """({join_key: values}, n); int64 keys as np.int64 arrays, string keys as lists of str."""
    if isinstance(entities, Mapping):
        cols = entities
    elif isinstance(entities, Sequence) and not isinstance(entities, (str, bytes)):
        cols = _rows_to_columns(entities, join_keys)
    else:
        raise EntityKeyError(
            f"entities must be a dict of join key -> values or a list of rows, got {type(entities).__name__}"
        )
    out: dict[str, Any] = {}
    n = -1
    for key, dtype in join_keys:
        values = cols.get(key)
        if values is None:
            raise EntityKeyError(
                f"entities lack join key {key!r}; given {sorted(cols)}", column=key
            )
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise EntityKeyError(f"entities[{key!r}] must be a list of values", column=key)
        if n < 0:
            n = len(values)
        elif len(values) != n:
            raise EntityKeyError(
                f"entity lists have unequal lengths: {key!r} has {len(values)}, expected {n}",
                column=key,
            )
        out[key] = _ints(key, values) if dtype == "int64" else _strings(key, values)
    return out, max(n, 0)


def _rows_to_columns(
    rows: Sequence[Mapping[str, Any]], join_keys: Sequence[tuple[str, str]]
) -> dict:
    cols: dict[str, list] = {k: [] for k, _ in join_keys}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise EntityKeyError(f"entity row {i} must be a dict of join key -> value", row=i)
        for k in cols:
            if k not in row:
                raise EntityKeyError(f"entity row {i} lacks join key {k!r}", column=k, row=i)
            cols[k].append(row[k])
    return cols


def _ints(key: str, values: Any) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):
        arr = np.asarray(values, dtype=object)
    if arr.dtype.kind == "i":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "u" and (arr.size == 0 or arr.max() < 2**63):
        return arr.astype(np.int64)
    out = np.empty(len(arr), dtype=np.int64)
    for i, v in enumerate(arr.tolist()):
        try:
            if isinstance(v, bool) or v is None:
                raise ValueError
            if isinstance(v, float):
                if not v.is_integer():
                    raise ValueError
                v = int(v)
            out[i] = int(v)
        except (ValueError, TypeError, OverflowError):
            raise EntityKeyError(
                f"join key {key!r}, row {i}: {v!r} is not an int64", column=key, row=i
            ) from None
    return out


def _strings(key: str, values: Any) -> list[str]:
    out = list(values.tolist() if isinstance(values, np.ndarray) else values)
    for i, v in enumerate(out):
        if not isinstance(v, str):
            raise EntityKeyError(
                f"join key {key!r}, row {i}: {v!r} is not a string", column=key, row=i
            )
    return out
