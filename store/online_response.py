"""OnlineResponse: the result of `get_online_features`, computed lazily from numpy arrays.

Construction only keeps references to the lookup results; `to_dict`, `statuses`,
`event_timestamps` and `to_arrow` each build their output on first use from whole arrays (no
per-row work beyond producing the Python values asked for). `keys`, `key_lists` and `lookups`
expose the parts to wire encoders (app/feast_json.py writes Feast's JSON from them).
Immutable after construction but for idempotent caches (two threads reading first may both
compute them); safe to read from any thread.

`to_dict` reads each view's features with one bulk decode (`LookupResult.columns`: Python lists,
None where not valid) and keeps per-row work in plain list operations; the numpy per-feature
path (`_Column`) serves `statuses`, `event_timestamps` and `to_arrow`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from store.dtypes import TIMESTAMP, arrow_type, vector_dim
from store.features import ViewRead

PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE = 0, 1, 2, 3
STATUS_NAMES = np.array(["PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"], dtype=object)
TIMESTAMP_DTYPE = "timestamp"


class ViewLookup:
    """One view's lookup: the plan part, the engine's result, and which rows are live.

    Row facts shared by all features of the view (event times, base statuses) are computed
    once, on first use; the plain lists (`found_list`, `live_list`, `dead_rows`) serve the
    per-row work of list-building encoders.
    """

    def __init__(
        self, read: ViewRead, result: Any, found: np.ndarray, expired: np.ndarray | None
    ) -> None:
        self.read = read
        self.result = result  # online.LookupResult
        self.found = found  # bool (n,): a row of this entity exists
        self.expired = expired  # bool (n,): found but older than ttl; None when no ttl
        # plain lists for the per-row work of the serving path (cheap to build; no numpy there)
        self.found_list: list[bool] = found.tolist()
        self.live_list: list[bool] = (
            self.found_list if expired is None else (found & ~expired).tolist()
        )  # rows whose values are served: found and not older than the ttl
        self.live_all = False not in self.live_list
        # rows not served (not found or older than the ttl); [] when every row is live
        self.dead_rows: list[int] = (
            [] if self.live_all else [r for r, ok in enumerate(self.live_list) if not ok]
        )

    @cached_property
    def event_ts(self) -> np.ndarray:
        ts = self.result.event_ts
        if not self.found.all():
            ts[~self.found] = 0
        return ts

    @cached_property
    def live(self) -> np.ndarray:
        """Rows whose values are served: found and not older than the ttl."""
        return self.found if self.expired is None else self.found & ~self.expired

    @cached_property
    def base_status_names(self) -> list[str]:
        """Statuses before nulls: PRESENT, NOT_FOUND or OUTSIDE_MAX_AGE per row."""
        if self.live_all:
            return ["PRESENT"] * len(self.found)
        codes = np.where(self.found, PRESENT, NOT_FOUND)
        if self.expired is not None:
            codes[self.expired] = OUTSIDE_MAX_AGE
        return STATUS_NAMES[codes].tolist()

    def served_columns(self) -> list[tuple[list, list[bool]]]:
        """Per feature of the read (values, valid) as new Python lists: values None and valid
        False where the row is null, not found or older than the ttl (one bulk decode)."""
        cols = self.result.columns(self.read.features)
        dead = self.dead_rows
        if dead:
            for vals, valid in cols:
                for r in dead:
                    vals[r] = None
                    valid[r] = False
        return cols

    def status_names(self, valid: list[bool]) -> list[str]:
        """PRESENT, NULL_VALUE, NOT_FOUND or OUTSIDE_MAX_AGE per row (a new list) of a feature
        whose served validity is `valid`."""
        if False not in valid:
            return ["PRESENT"] * len(valid)
        out = list(self.base_status_names)
        live = self.live_list
        for r, ok in enumerate(valid):
            if not ok and live[r]:
                out[r] = "NULL_VALUE"
        return out


class _Column:
    """One output feature: its values and validity, and (on demand) statuses and timestamps."""

    __slots__ = ("name", "dtype", "valid", "_lookup", "_feature", "_values")

    def __init__(self, name: str, dtype: str, feature: str, lookup: ViewLookup, live: np.ndarray):
        self.name = name
        self.dtype = dtype
        self._lookup = lookup
        self._feature = feature
        self._values: np.ndarray | None = None
        valid = lookup.result.valid(feature)
        self.valid = valid if live is lookup.found else valid & live

    @property
    def values(self) -> np.ndarray:
        """The engine's values (0 or None where not valid), read on first use."""
        if self._values is None:
            self._values = self._lookup.result.values(self._feature)
        return self._values

    @property
    def status_names(self) -> list[str]:
        """PRESENT, NULL_VALUE, NOT_FOUND or OUTSIDE_MAX_AGE per row (a new list)."""
        lk = self._lookup
        out = list(lk.base_status_names)
        if not lk.live_all:
            null = lk.live & ~self.valid
        elif not self.valid.all():
            null = ~self.valid
        else:
            return out
        for i in np.flatnonzero(null).tolist():
            out[i] = "NULL_VALUE"
        return out

    @property
    def event_ts(self) -> np.ndarray:
        """int64 ns event time of the row read; 0 where not found (shared by the view's columns)."""
        return self._lookup.event_ts


class OnlineResponse:
    """Features of `n` entities: join key columns first, then features in request order."""

    def __init__(
        self, keys: dict[str, Any], key_dtypes: dict[str, str], lookups: list[ViewLookup], n: int
    ):
        self._keys = keys
        self._key_dtypes = key_dtypes
        self._lookups = lookups
        self.n = n

    @property
    def feature_names(self) -> list[str]:
        return [name for lk in self._lookups for name in lk.read.names]

    @cached_property
    def _columns(self) -> list[_Column]:
        cols = []
        for lk in self._lookups:
            live = lk.live
            for feat, name, dtype in zip(
                lk.read.features, lk.read.names, lk.read.dtypes, strict=True
            ):
                cols.append(_Column(name, dtype, feat, lk, live))
        return cols

    @cached_property
    def statuses(self) -> dict[str, list[str]]:
        """{feature name: [PRESENT | NULL_VALUE | NOT_FOUND | OUTSIDE_MAX_AGE]}."""
        return {c.name: c.status_names for c in self._columns}

    @cached_property
    def event_timestamps(self) -> dict[str, list[pd.Timestamp]]:
        """{feature name: [event time of the row read (UTC); the epoch where not found]}."""
        return {
            c.name: [pd.Timestamp(t, tz="UTC") for t in c.event_ts.tolist()] for c in self._columns
        }

    @property
    def keys(self) -> dict[str, Any]:
        """The parsed join key columns (np.int64 arrays or lists of str), in join key order."""
        return self._keys

    @property
    def lookups(self) -> list[ViewLookup]:
        """One ViewLookup per view read, in request order."""
        return self._lookups

    def key_lists(self) -> dict[str, list]:
        """The join key columns as new Python lists."""
        return {
            k: (v.tolist() if isinstance(v, np.ndarray) else list(v)) for k, v in self._keys.items()
        }

    def to_dict(self) -> dict[str, list]:
        """{join key: [values], feature: [values or None]}; timestamps as pandas Timestamps."""
        out = self.key_lists()
        for lk in self._lookups:
            cols = lk.served_columns()
            for name, dtype, (vals, _valid) in zip(
                lk.read.names, lk.read.dtypes, cols, strict=True
            ):
                if dtype == TIMESTAMP_DTYPE:
                    vals = [None if t is None else pd.Timestamp(t, tz="UTC") for t in vals]
                out[name] = vals
        return out

    def to_arrow(self) -> pa.Table:
        arrays, names = [], []
        for k, v in self._keys.items():
            arrays.append(pa.array(v, type=arrow_type(self._key_dtypes[k])))
            names.append(k)
        for c in self._columns:
            arrays.append(_to_arrow(c))
            names.append(c.name)
        return pa.Table.from_arrays(arrays, names=names)


def _to_arrow(c: _Column) -> pa.Array:
    mask = ~c.valid
    dim = vector_dim(c.dtype)
    if dim is not None:
        flat = pa.array(np.ascontiguousarray(c.values, dtype=np.float32).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, dim, mask=pa.array(mask))
    if c.dtype == "timestamp":
        return pa.array(c.values.astype(np.int64), type=pa.int64(), mask=mask).cast(TIMESTAMP)
    if c.dtype == "string":
        vals = c.values.tolist()
        for i in np.flatnonzero(mask).tolist():
            vals[i] = None
        return pa.array(vals, type=pa.string())
    return pa.array(c.values, type=arrow_type(c.dtype), mask=mask)
