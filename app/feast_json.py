"""Feast's JSON response of /get-online-features (FEAST_REST.md), built from an OnlineResponse.

`feast_json(response)` returns a JSON-ready dict for orjson: join keys first, then features in
request order, each as {"values", "statuses", "event_timestamps"}; NaN and ±Inf as the strings
Feast writes, timestamp features as epoch seconds, event times as RFC 3339 text ending in Z (the
plain epoch where not found). Every call returns new lists (the server adds to the metadata).

Serving path: each view's features come from one bulk decode (`LookupResult.columns`: Python
lists, None where not valid); per-row work stays in plain list operations, and RFC 3339 text
comes from one numba kernel per view (store.timestamps.format_utc) or a small cache of
formatted seconds.
Module-level caches are bounded dicts whose single operations are atomic: safe from any thread.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from itertools import compress
from typing import Any

import numpy as np

from store.dtypes import vector_dim
from store.features import ViewRead
from store.online_response import OnlineResponse, ViewLookup
from store.timestamps import format_utc

__all__ = ["EPOCH_RFC3339", "feast_json", "rfc3339"]

EPOCH_RFC3339 = "1970-01-01T00:00:00Z"  # Feast's event time of a key column and of a miss
_FLOAT_STRINGS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_NS = 1_000_000_000


def feast_json(response: OnlineResponse) -> dict[str, Any]:
    """Feast's response shape: {"metadata": {"feature_names"}, "results": [...]}, JSON-ready."""
    n = response.n
    epoch = [EPOCH_RFC3339] * n
    present = ["PRESENT"] * n
    results: list[dict[str, Any]] = [
        {"values": values, "statuses": present, "event_timestamps": epoch}
        for values in response.key_lists().values()
    ]
    names = list(response.keys)
    for lk in response.lookups:
        names += lk.read.names
        ts = _event_times(lk)
        cols = lk.result.columns(lk.read.features)
        if n == 1:
            _view_one(lk, cols, ts, results)
        else:
            _view_many(lk, cols, ts, results, n)
    return {"metadata": {"feature_names": names}, "results": results}


def _event_times(lk: ViewLookup) -> list[str]:
    """RFC 3339 text of the event time of each row (the plain epoch where not found)."""
    ts = lk.result.event_ts
    if not lk.live_all and False in lk.found_list:
        ts = np.where(lk.found, ts, 0)
    return rfc3339(ts)


# ---- values -------------------------------------------------------------------------------------

_KIND_PLAIN, _KIND_FLOAT, _KIND_VECTOR, _KIND_TIMESTAMP = 0, 1, 2, 3
_KINDS = {"float32": _KIND_FLOAT, "float64": _KIND_FLOAT, "timestamp": _KIND_TIMESTAMP}
_READ_KINDS: dict[int, tuple[ViewRead, list[int]]] = {}  # id(read) -> (read, kind per feature)


def _kind(dtype: str) -> int:
    kind = _KINDS.get(dtype)
    if kind is None:
        kind = _KINDS[dtype] = _KIND_VECTOR if vector_dim(dtype) is not None else _KIND_PLAIN
    return kind


def _kinds(read: ViewRead) -> list[int]:
    kinds = _READ_KINDS.get(id(read))
    if kinds is None or kinds[0] is not read:
        if len(_READ_KINDS) >= 4096:
            _READ_KINDS.clear()  # a bounded cache; dict operations are atomic
        kinds = _READ_KINDS[id(read)] = (read, [_kind(d) for d in read.dtypes])
    return kinds[1]


def _view_one(
    lk: ViewLookup, cols: list[tuple[list, list[bool]]], ts: list[str], results: list
) -> None:
    """The columns of one view for a single entity (no per-column list passes)."""
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


def _view_many(
    lk: ViewLookup, cols: list[tuple[list, list[bool]]], ts: list[str], results: list, n: int
) -> None:
    """The columns of one view for n entities."""
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


def _epoch_seconds(vals: list) -> list:
    """A timestamp feature's values (int ns or None) as Feast's feature server answers a
    UnixTimestamp: epoch seconds, an int when whole (a float keeps a fraction, which Feast's
    client truncates, as its own protos hold whole seconds); None stays None."""
    return [v if v is None else (v // _NS if v % _NS == 0 else v / _NS) for v in vals]


# ---- RFC 3339 -----------------------------------------------------------------------------------

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
    Matches numpy's datetime_as_string (tests/app/test_feast_json.py checks it).
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
    if len(vals) >= _VECTOR_MIN:  # one kernel call for the whole array
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
