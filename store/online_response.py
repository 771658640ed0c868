"""OnlineResponse: the result of `get_online_features`, computed lazily from numpy arrays.

Construction only keeps references to the lookup results; `to_dict`, `statuses`,
`event_timestamps`, `to_arrow` and `to_feast_json` each build their output on first use from
whole arrays (no per-row work beyond producing the Python values asked for). Immutable after
construction but for idempotent caches (two threads reading first may both compute them); safe to read
from any thread.
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
EPOCH_RFC3339 = "1970-01-01T00:00:00Z"
_FLOAT_STRINGS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


class ViewLookup:
    """One view's lookup: the plan part, the engine's result, and which rows are live.

    Row facts shared by all features of the view (event times, their RFC 3339 text) are
    computed once, on first use.
    """

    def __init__(
        self, read: ViewRead, result: Any, found: np.ndarray, expired: np.ndarray | None
    ) -> None:
        self.read = read
        self.result = result  # online.LookupResult
        self.found = found  # bool (n,): a row of this entity exists
        self.expired = expired  # bool (n,): found but older than ttl; None when no ttl

    @cached_property
    def event_ts(self) -> np.ndarray:
        ts = self.result.event_ts
        if not self.found.all():
            ts[~self.found] = 0
        return ts

    @cached_property
    def event_ts_rfc3339(self) -> list[str]:
        return rfc3339(self.event_ts)

    @cached_property
    def live(self) -> np.ndarray:
        """Rows whose values are served: found and not older than the ttl."""
        return self.found if self.expired is None else self.found & ~self.expired

    @cached_property
    def live_all(self) -> bool:
        return bool(self.live.all())

    @cached_property
    def base_status_names(self) -> list[str]:
        """Statuses before nulls: PRESENT, NOT_FOUND or OUTSIDE_MAX_AGE per row."""
        if self.live_all:
            return ["PRESENT"] * len(self.found)
        codes = np.where(self.found, PRESENT, NOT_FOUND)
        if self.expired is not None:
            codes[self.expired] = OUTSIDE_MAX_AGE
        return STATUS_NAMES[codes].tolist()


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

    @property
    def event_ts_rfc3339(self) -> list[str]:
        return self._lookup.event_ts_rfc3339


def rfc3339(ns: np.ndarray) -> list[str]:
    """int64 ns since epoch -> RFC 3339 UTC strings ending in Z, with the shortest exact unit."""
    ns = np.asarray(ns, dtype=np.int64)
    unit = "ns"
    for u, div in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if not (ns % div).any():  # the shortest unit that is exact for every value
            unit = u
            break
    text = np.datetime_as_string(ns.astype("datetime64[ns]"), unit=unit)  # type: ignore[call-overload]
    out = [s + "Z" for s in text.tolist()]
    if unit != "s":
        for i in np.flatnonzero(ns == 0).tolist():  # "not found" reads as Feast's plain epoch
            out[i] = EPOCH_RFC3339
    return out


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

    def _key_lists(self) -> dict[str, list]:
        return {
            k: (v.tolist() if isinstance(v, np.ndarray) else list(v)) for k, v in self._keys.items()
        }

    def to_dict(self) -> dict[str, list]:
        """{join key: [values], feature: [values or None]}; timestamps as pandas Timestamps."""
        out = self._key_lists()
        for c in self._columns:
            if c.dtype == "timestamp":
                vals: list = [pd.Timestamp(int(t), tz="UTC") for t in c.values.tolist()]
            else:
                vals = c.values.tolist()
            if not c.valid.all():
                for i in np.flatnonzero(~c.valid).tolist():
                    vals[i] = None
            out[c.name] = vals
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

    def to_feast_json(self) -> dict[str, Any]:
        """Feast's response shape (FEAST_REST.md): JSON-ready, NaN/Inf as strings, RFC 3339 Z."""
        results: list[dict[str, Any]] = []
        epoch = [EPOCH_RFC3339] * self.n
        present = ["PRESENT"] * self.n
        for values in self._key_lists().values():
            results.append({"values": values, "statuses": present, "event_timestamps": epoch})
        for c in self._columns:
            results.append(
                {
                    "values": _json_values(c),
                    "statuses": c.status_names,
                    "event_timestamps": c.event_ts_rfc3339,
                }
            )
        names = [*self._keys, *(c.name for c in self._columns)]
        return {"metadata": {"feature_names": names}, "results": results}


def _json_values(c: _Column) -> list[Any]:
    vals: list[Any]
    if c.dtype == "timestamp":
        vals = list(rfc3339(c.values))
    elif c.dtype in ("float32", "float64") or vector_dim(c.dtype) is not None:
        # null and not-found rows hold 0 (online contract), so check every value at once
        if np.isfinite(c.values).all():
            vals = c.values.tolist()
        else:
            vals = _float_strings(c.values.tolist())
    else:
        vals = c.values.tolist()
    if not c.valid.all():
        for i in np.flatnonzero(~c.valid).tolist():
            vals[i] = None
    return vals


def _float_strings(vals: list) -> list:
    def fix(v: Any) -> Any:
        if isinstance(v, list):
            return [fix(x) for x in v]
        if v != v or v in (float("inf"), float("-inf")):
            return _FLOAT_STRINGS[repr(v)]
        return v

    return [fix(v) for v in vals]


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
