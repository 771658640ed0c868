"""The partitions of a few entity rows in plain Python: the read path's routing of small requests.

`small_partitions` gives exactly what `partitions_of(key_texts([pa.array(c) for c in columns]))`
gives (cluster/partitioning.py: the canonical key text, Kafka's murmur2, `& 0x7fffffff`, `% P`)
for up to SMALL_ROWS rows whose key values are Python ints (int64 range) or strs, one type per
column; anything else returns None and the caller takes the Arrow path, which names the problem.
Why: building Arrow arrays and casting them costs tens of microseconds per call whatever the
size, the whole budget of a one-entity read; a scalar murmur2 of a short key costs a few.

Pure functions; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cluster._murmur2 import SEED

SMALL_ROWS = 16  # above this, the Arrow path is as cheap per row
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_POSITIVE = 0x7FFFFFFF
_INT64 = (-(1 << 63), (1 << 63) - 1)


def murmur2_positive(data: bytes) -> int:
    """Kafka's `Utils.toPositive(Utils.murmur2(data))`."""
    length = len(data)
    h = (SEED ^ length) & _MASK
    n4 = length & ~3
    for i in range(0, n4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length - n4
    if rest == 3:
        h ^= data[n4 + 2] << 16
    if rest >= 2:
        h ^= data[n4 + 1] << 8
    if rest >= 1:
        h ^= data[n4]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h & _POSITIVE


def small_partitions(columns: Sequence[Sequence[Any]], partitions: int) -> np.ndarray | None:
    """int32 partition of each row of `columns` (the routing key columns in join key order),
    or None when the rows are too many or a value is not an int64 int or a str (module doc)."""
    if not columns or partitions < 1:
        return None
    n = len(columns[0])
    if n > SMALL_ROWS or any(len(c) != n for c in columns):
        return None
    texts = [_texts(c) for c in columns]
    if any(t is None for t in texts):
        return None
    out = np.empty(n, np.int32)
    for i in range(n):
        if len(texts) == 1:
            key = texts[0][i]  # type: ignore[index]
        else:
            key = "".join(f"{len(t[i].encode())}:{t[i]}" for t in texts)  # type: ignore[index]
        out[i] = murmur2_positive(key.encode()) % partitions
    return out


def _texts(values: Sequence[Any]) -> list[str] | None:
    """The canonical texts of one column's values, or None (mixed or unsupported types)."""
    kinds = {type(v) for v in values}
    if kinds == {str}:
        return list(values)
    if kinds == {int} and all(_INT64[0] <= v <= _INT64[1] for v in values):
        return [str(v) for v in values]
    return None
