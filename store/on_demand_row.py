"""The one-entity path of on-demand reads: plain Python values from end to end, no numpy.

A one-entity online read is the serving case; there every numpy call (about a microsecond
each, whatever the row count) is most of the cost. This path takes the request fields as the
Python values sent (`request_row`), the source features from one struct decode of the source
row (`source_row`, via the lookup result's `columns`), evaluates each program's one-row
function (`Program.evaluate_row`, which equals the vectorized evaluator, tested) and returns
OnDemandRows, ViewLookups shaped like online.LookupResult too, for the response machinery.
Any request that is not one plain row (numpy arrays, rows of mappings, a value of another type,
a missing field) gets None from `request_row`: the vectorized path serves it and raises its
errors, so both paths accept and refuse the same requests. Stateless; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np

from online import LookupResult
from store.expressions import OUTPUT_DTYPES
from store.features import ViewRead
from store.on_demand import OnDemandPlan
from store.online_response import ViewLookup

_MIN, _MAX = -(2**63), 2**63 - 1
_ZERO = {"int64": 0, "float64": 0.0, "float32": 0.0, "bool": False, "string": None}
# the Python type an expression slot of a source dtype takes (store/expressions/types.py)
_SLOT_TYPES: dict[str, type] = {
    "int32": int,
    "int64": int,
    "float32": float,
    "float64": float,
    "bool": bool,
    "string": str,
}


class OnDemandRow(ViewLookup):
    """One computed row of an on-demand view: a ViewLookup (found and live, no ttl) that is
    its own result, shaped like online.LookupResult: `values`, `valid`, `columns`, `event_ts`
    (the epoch: 0) and `found` (True). Every array it returns is new but `found`, which is
    built once. One object per view and request: the serving path's cost is per object."""

    # the state ViewLookup.__init__ derives, the same for every row: class constants, which
    # ViewLookup and the encoders only read
    expired = None
    found_list = live_list = [True]
    live_all = True
    dead_rows: list[int] = []

    def __init__(self, read: ViewRead, values: list[Any]) -> None:
        self.read = read
        self._values = values  # per feature of read, None for null

    @property
    def result(self) -> OnDemandRow:  # type: ignore[override]
        return self

    @cached_property
    def found(self) -> np.ndarray:  # type: ignore[override]
        return np.ones(1, dtype=bool)

    @property
    def event_ts(self) -> np.ndarray:  # type: ignore[override]
        return np.zeros(1, dtype=np.int64)

    def __len__(self) -> int:
        return 1

    def _value(self, name: str) -> Any:
        return self._values[self.read.features.index(name)]

    def valid(self, name: str) -> np.ndarray:
        return np.array([self._value(name) is not None])

    def values(self, name: str) -> np.ndarray:
        dtype = self.read.dtypes[self.read.features.index(name)]
        v = self._value(name)
        return np.array([_ZERO[dtype] if v is None else v], dtype=OUTPUT_DTYPES[dtype])

    def columns(self, names: Sequence[str]) -> list[tuple[list, list[bool]]]:
        """Per name ([value or None], [valid]) as new lists."""
        values = self._values if names == self.read.features else map(self._value, names)
        return [([v], [v is not None]) for v in values]

    def served_columns(self) -> list[tuple[list, list[bool]]]:
        return [([v], [v is not None]) for v in self._values]


def request_row(entities: Any, od: OnDemandPlan) -> list[Any] | None:
    """The request fields of `od` in a one-row request (columnar `{field: [value]}` or one row
    `[{field: value}]`) as Python values of their dtype (None for null), or None when the
    request is anything else (the vectorized path then reads it, and refuses what it
    refuses)."""
    row = None  # the one row of a request of rows, else None (columnar)
    if type(entities) is list and len(entities) == 1 and type(entities[0]) is dict:
        row = entities[0]
    elif type(entities) is not dict:
        return None
    out: list[Any] = []
    for name, dtype in od.request:
        if row is not None:
            if name not in row:
                return None
            v = row[name]
        else:
            values = entities.get(name)
            if type(values) is not list or len(values) != 1:
                return None
            v = values[0]
        t = type(v)
        if t is int and dtype in ("float64", "int64"):
            if not _MIN <= v <= _MAX:
                return None
            if dtype == "float64":
                v = float(v)  # as numpy casts an int64 array
        elif not (
            v is None
            or t is float
            and dtype == "float64"
            or t is bool
            and dtype == "bool"
            or t is str
            and dtype == "string"
        ):
            return None
        out.append(v)
    return out


def source_row(lk: ViewLookup, features: tuple[str, ...], dtypes: tuple[str, ...]) -> list[Any]:
    """The values of `features` (of `dtypes`) in the one row of `lk`, as expression slots take
    them: None where null, not found or older than the ttl."""
    if not lk.live_list[0]:
        return [None] * len(features)
    result = lk.result
    if type(result) is LookupResult:  # a feature view's row: exact Python types already
        return result.first_row(features)
    out = []
    for (vals, _), dtype in zip(result.columns(features), dtypes, strict=True):
        v = vals[0]
        if v is not None:
            want = _SLOT_TYPES[dtype]
            if type(v) is not want:  # a numpy scalar (an aggregation's picked value)
                v = want(v)
        out.append(v)
    return out


def evaluate_row(od: OnDemandPlan, env: list[Any]) -> list[ViewLookup]:
    """One OnDemandRow per on-demand view of `od`, from `env`: the one-row input list of
    od.row (request fields, then the source features)."""
    row = od.row
    if row is None:
        raise ValueError("the plan has no one-row layout (store.on_demand.row_plan)")
    out: list[ViewLookup] = []
    for r, steps in zip(od.reads, row.steps, strict=True):
        values = []
        for fn, g in steps:
            values.append(fn(env if g is None else g(env)))
        out.append(OnDemandRow(r.read, values))
    return out
