"""LookupResult: the rows `get_many` found, as one (n, rowwords) record buffer plus where each row
came from (for string values, which live outside the records). Every array it returns is a new
array owned by the caller. Immutable after construction; safe to read from any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from online._kernels import LOC_SHIFT
from online.schema import Layout

__all__ = ["LookupResult", "feature_arrays"]


def feature_arrays(
    layout: Layout, records: np.ndarray, strings: dict[int, Any], present: np.ndarray | None = None
) -> list[pa.Array]:
    """Arrow arrays of every field from records (+ string values per string field: a pa.Array or a
    sequence of str/None); rows where `present` is False are null."""
    cols = []
    for i, f in enumerate(layout.fields):
        valid = layout.valid(records, f.name)
        if present is not None:
            valid &= present
        mask = ~valid
        if f.dtype == "string":
            s = strings[i]
            arr = s if isinstance(s, pa.Array) else pa.array(s, type=pa.large_string())
            if mask.any():
                arr = pc.if_else(pa.array(mask), pa.nulls(len(arr), arr.type), arr)
            cols.append(arr)
            continue
        vals = layout.values(records, f.name)
        if f.vector_width:
            flat = pa.array(vals.reshape(-1), type=pa.float32())
            cols.append(
                pa.FixedSizeListArray.from_arrays(flat, f.vector_width, mask=pa.array(mask))
            )
        else:
            cols.append(pa.array(vals, type=f.arrow_type, mask=mask))
    return cols


class LookupResult:
    """Result of `LSMTree.get_many` for n keys, in the order of the keys."""

    def __init__(
        self, layout: Layout, records: np.ndarray, loc: np.ndarray, sources: Sequence[Any]
    ) -> None:
        """records: (n, rowwords); loc: source index << LOC_SHIFT | position, -1 if not found."""
        self._layout = layout
        self._records = records
        self._loc = loc
        self._sources = sources
        self.found = loc >= 0

    def __len__(self) -> int:
        return len(self.found)

    @property
    def event_ts(self) -> np.ndarray:
        return self._records[:, 0].copy()

    @property
    def created_ts(self) -> np.ndarray:
        return self._records[:, 1].copy()

    @property
    def seq(self) -> np.ndarray:
        return self._records[:, 2].copy()

    @property
    def fields(self) -> list[str]:
        return [f.name for f in self._layout.fields]

    def valid(self, name: str) -> np.ndarray:
        """(n,) bool: False where the feature is null or the key was not found."""
        return self._layout.valid(self._records, name) & self.found

    def values(self, name: str) -> np.ndarray:
        """(n,) values of feature `name` (int32/int64/float32/float64/bool; timestamp as int64 ns;
        float32[N] as (n, N) float32; string as an object array of str/None). Null and not-found
        rows hold 0 (None for strings); use `valid`."""
        i = self._layout.field_index(name)
        f = self._layout.fields[i]
        if f.dtype != "string":
            return self._layout.values(self._records, name)
        out = np.full(len(self.found), None, dtype=object)
        valid = self.valid(name)
        src = self._loc >> LOC_SHIFT
        for sid in np.unique(src[valid]):
            idx = np.flatnonzero(valid & (src == sid))
            pos = self._loc[idx] & ((1 << LOC_SHIFT) - 1)
            out[idx] = self._sources[sid].string_values(f, pos)
        return out

    def to_arrow(self) -> pa.RecordBatch:
        """found, event_timestamp, created_timestamp, seq, then one column per feature (null where
        null or not found)."""
        ts = pa.timestamp("ns", tz="UTC")
        absent = ~self.found
        cols = [
            pa.array(self.found),
            pa.array(self.event_ts, type=ts, mask=absent),
            pa.array(self.created_ts, type=ts, mask=absent),
            pa.array(self.seq, mask=absent),
        ]
        strings = {i: self.values(self._layout.fields[i].name) for i in self._layout.string_fields}
        cols += feature_arrays(self._layout, self._records, strings, self.found)
        names = ["found", "event_timestamp", "created_timestamp", "seq"] + self.fields
        return pa.RecordBatch.from_arrays(cols, names=names)
