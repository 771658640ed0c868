"""OnlineResponse: the result of `get_online_features`, computed lazily from numpy arrays.

Construction only keeps references to the lookup results; `to_dict`, `statuses`,
`event_timestamps`, `to_arrow` and `to_feast_json` each build their output on first use from
whole arrays (no per-row work beyond producing the Python values asked for). Immutable after
construction but for idempotent caches (two threads reading first may both compute them); safe to read
from any thread.

Serving path: `to_feast_json` and `to_dict` read each view's features with one bulk decode
(`LookupResult.columns`: Python lists, None where not valid) and keep per-row work in plain list
operations; statuses and event times are built once per view, and RFC 3339 text comes from a small
cache of formatted seconds. The numpy per-feature path (`_Column`) serves `statuses`,
`event_timestamps` and `to_arrow`.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from functools import cached_property
from itertools import compress
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from store._timefmt import format_utc
from store.dtypes import TIMESTAMP, arrow_type, vector_dim
from store.features import ViewRead

PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE = 0, 1, 2, 3
STATUS_NAMES = np.array(["PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"], dtype=object)
EPOCH_RFC3339 = "1970-01-01T00:00:00Z"
TIMESTAMP_DTYPE = "timestamp"
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
        self._ts_text: list[str] | None = None

    @cached_property
    def event_ts(self) -> np.ndarray:
        ts = self.result.event_ts
        if not self.found.all():
            ts[~self.found] = 0
        return ts

    @property
    def event_ts_rfc3339(self) -> list[str]:
        """RFC 3339 text of the event time per row (the plain epoch where not found); built once
        (a plain attribute: functools.cached_property takes a lock on every first use)."""
        text = self._ts_text
        if text is None:
            ts = self.result.event_ts
            if not self.live_all and False in self.found_list:
                ts = np.where(self.found, ts, 0)
            text = self._ts_text = rfc3339(ts)
        return text

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

    @property
    def event_ts_rfc3339(self) -> list[str]:
        return self._lookup.event_ts_rfc3339


_NAT = -(2**63)  # numpy's NaT, which datetime_as_string writes as "NaT"
_EPOCH_DT = datetime(1970, 1, 1)
_SECONDS: dict[int, str] = {}  # whole seconds since epoch -> "YYYY-MM-DDTHH:MM:SS"
_SECONDS_MAX = 4096
_ONE: dict[int, str] = {}  # ns -> its RFC 3339 text when formatted alone (bounded like _SECONDS)
_VECTOR_MIN = 8  # from this many values on, rfc3339 formats in one kernel call
_FRACTION = {"ms": (10**6, "{}.{:03d}Z"), "us": (10**3, "{}.{:06d}Z"), "ns": (1, "{}.{:09d}Z")}


def _seconds_text(sec: int) -> str:
    text = _SECONDS.get(sec)
    if text is None:
        if len(_SECONDS) >= _SECONDS_MAX:
            _SECONDS.clear()  # a bounded cache of recent seconds; dict ops are atomic
        # naive datetime with no microseconds: isoformat() is exactly YYYY-MM-DDTHH:MM:SS
        text = _SECONDS[sec] = (_EPOCH_DT + timedelta(seconds=sec)).isoformat()
    return text


def _rfc3339_one(ns: int, unit: str) -> str:
    if ns == _NAT:
        return "NaTZ"
    if ns == 0 and unit != "s":  # "not found" reads as Feast's plain epoch
        return EPOCH_RFC3339
    sec, frac = divmod(ns, 10**9)
    if unit == "s":
        return _seconds_text(sec) + "Z"
    div, fmt = _FRACTION[unit]
    return fmt.format(_seconds_text(sec), frac // div)


def _unit(ns: Any) -> str:
    """The shortest unit that is exact for every value (s, ms, us or ns) of a collection of ints."""
    if isinstance(ns, np.ndarray) or len(ns) > 32:
        arr = ns if isinstance(ns, np.ndarray) else np.fromiter(ns, dtype=np.int64, count=len(ns))
        for u, div in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
            if not (arr % div).any():
                return u
        return "ns"
    for u, div in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        for v in ns:
            if v % div:
                break
        else:
            return u
    return "ns"


def rfc3339(ns: np.ndarray | list[int]) -> list[str]:
    """int64 ns since epoch -> RFC 3339 UTC strings ending in Z, with the shortest unit that is
    exact for every value; 0 is the plain epoch "1970-01-01T00:00:00Z" (Feast's "not found").
    Matches numpy's datetime_as_string (tests/store/test_online_response.py checks it).
    Each distinct value is formatted once."""
    vals = ns.tolist() if isinstance(ns, np.ndarray) and len(ns) < _VECTOR_MIN else ns
    if len(vals) == 1:  # one value: its own shortest unit, so the text depends on it alone
        v = vals[0]
        text1 = _ONE.get(v)
        if text1 is None:
            if len(_ONE) >= _SECONDS_MAX:
                _ONE.clear()
            text1 = _ONE[v] = _rfc3339_one(v, _unit(vals))
        return [text1]
    if len(vals) >= _VECTOR_MIN:  # one kernel for the array: ~20x faster than per value
        arr = ns if isinstance(ns, np.ndarray) else np.asarray(vals, dtype=np.int64)
        unit = _unit(arr)
        out = format_utc(arr, unit)
        if unit != "s":
            for i in np.flatnonzero(arr == 0).tolist():
                out[i] = EPOCH_RFC3339
        for i in np.flatnonzero(arr == _NAT).tolist():
            out[i] = "NaTZ"
        return out
    distinct = set(vals)
    unit = _unit(distinct)
    text = {v: _rfc3339_one(v, unit) for v in distinct}
    return [text[v] for v in vals]


def _epoch_seconds(vals: list) -> list:
    """A timestamp feature's values (int ns or None) as Feast's feature server answers a
    UnixTimestamp: epoch seconds, an int when whole (a float keeps a fraction, which Feast's
    client truncates, as its own protos hold whole seconds); None stays None."""
    return [v if v is None else (v // _NS if v % _NS == 0 else v / _NS) for v in vals]


_NS = 1_000_000_000


_KIND_PLAIN, _KIND_FLOAT, _KIND_VECTOR, _KIND_TIMESTAMP = 0, 1, 2, 3
_KINDS = {"float32": _KIND_FLOAT, "float64": _KIND_FLOAT, "timestamp": _KIND_TIMESTAMP}


def _kind(dtype: str) -> int:
    kind = _KINDS.get(dtype)
    if kind is None:
        kind = _KINDS[dtype] = _KIND_VECTOR if vector_dim(dtype) is not None else _KIND_PLAIN
    return kind


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

    def to_feast_json(self) -> dict[str, Any]:
        """Feast's response shape (FEAST_REST.md): JSON-ready, NaN/Inf as strings, RFC 3339 Z."""
        n = self.n
        epoch = [EPOCH_RFC3339] * n
        present = ["PRESENT"] * n
        results: list[dict[str, Any]] = [
            {"values": values, "statuses": present, "event_timestamps": epoch}
            for values in self._key_lists().values()
        ]
        names = list(self._keys)
        for lk in self._lookups:
            names += lk.read.names
            ts = lk.event_ts_rfc3339
            cols = lk.result.columns(lk.read.features)
            if n == 1:
                _feast_one(lk, cols, ts, results)
            else:
                _feast_many(lk, cols, ts, results, n)
        return {"metadata": {"feature_names": names}, "results": results}


def _kinds(read: ViewRead) -> list[int]:
    kinds = _READ_KINDS.get(id(read))
    if kinds is None or kinds[0] is not read:
        if len(_READ_KINDS) >= 4096:
            _READ_KINDS.clear()  # a bounded cache; dict operations are atomic
        kinds = _READ_KINDS[id(read)] = (read, [_kind(d) for d in read.dtypes])
    return kinds[1]


_READ_KINDS: dict[int, tuple[ViewRead, list[int]]] = {}  # id(read) -> (read, kind per feature)


def _feast_one(
    lk: ViewLookup, cols: list[tuple[list, list[bool]]], ts: list[str], results: list
) -> None:
    """to_feast_json columns of one view for a single entity (no per-column list passes)."""
    dead = bool(lk.dead_rows)
    isfinite = math.isfinite
    for kind, (vals, _valid) in zip(_kinds(lk.read), cols, strict=True):
        v = vals[0]
        if v is None or dead:
            results.append(
                {"values": [None], "statuses": lk.status_names([False]), "event_timestamps": ts}
            )
            continue
        if kind == _KIND_FLOAT:
            if not isfinite(v):
                vals = [_FLOAT_STRINGS[repr(v)]]
        elif kind == _KIND_VECTOR:
            if not isfinite(sum(v)):
                vals = _float_strings(vals)
        elif kind == _KIND_TIMESTAMP:
            vals = _epoch_seconds(vals)
        results.append({"values": vals, "statuses": ["PRESENT"], "event_timestamps": ts})


def _feast_many(
    lk: ViewLookup, cols: list[tuple[list, list[bool]]], ts: list[str], results: list, n: int
) -> None:
    """to_feast_json columns of one view for n entities."""
    dead = lk.dead_rows
    isfinite = math.isfinite
    for kind, (vals, valid) in zip(_kinds(lk.read), cols, strict=True):
        if kind == _KIND_TIMESTAMP:
            vals = _epoch_seconds(vals)
        for r in dead:
            vals[r] = None
            valid[r] = False
        all_valid = False not in valid
        if kind == _KIND_FLOAT or kind == _KIND_VECTOR:
            # a float sum is finite only if every term is (one that overflows only sends this
            # column to the exact per-value path)
            terms = vals if all_valid else list(compress(vals, valid))
            total = sum(terms) if kind == _KIND_FLOAT else sum(map(sum, terms))
            if not isfinite(total):
                vals = _float_strings(vals)
        statuses = ["PRESENT"] * n if all_valid else lk.status_names(valid)
        results.append({"values": vals, "statuses": statuses, "event_timestamps": ts})


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
