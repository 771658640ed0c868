"""Online reads of aggregation views: the aggregates of each requested entity at T = now.

`lookup_aggregates` is the aggregation-view branch of store/online_read.py: it maps the
request's entity keys to engine keys (store/aggregations/keys.py) and makes one kernel call
over the view's EventState (store/aggregations/_kernels.py `read_rows`: every entity, every
event column, every window, finished with the same arithmetic as the export); only min, max
and last values are then picked from the state. The result is a ViewLookup like a plain
view's, so every encoder serves it unchanged. `read_online(now_ns=...)` sets T.

Statuses: every entity is found (an aggregate over no events is defined): count 0 and PRESENT,
the other functions null and NULL_VALUE, whether the entity is unknown or only has no event in
the window. The event time of every aggregate is T. Safe from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from store.aggregations import _kernels as K
from store.aggregations.events import AggregationTree, EventState, _Arrays, string_at, strings
from store.aggregations.finish import FUNCTION_CODES, VALUE_DTYPES, column_plans, window_starts
from store.aggregations.keys import engine_keys
from store.aggregations.spec import Aggregation
from store.features import ViewRead
from store.online_response import ViewLookup

_PLANS: dict[int, tuple[ViewRead, _ReadPlan]] = {}  # id(read) -> (read, plan)
_FLOATS = ("sum", "mean", "stddev")


@dataclass(frozen=True)
class _ReadPlan:
    """A ViewRead compiled for read_rows: its column groups and outputs, in output order."""

    aggs: tuple[Aggregation, ...]
    groups: np.ndarray  # (G, 1 + Kmax): column index, window lengths ascending, 0-padded
    outs: np.ndarray  # (M, 3): function code, group, window k
    windows: tuple[tuple[int, ...], ...]  # per group
    kinds: tuple[int, ...]  # per output: _INT, _FLOAT or _PICKED
    index: Mapping[str, int]  # feature -> output
    # per _PICKED output: (j, aggregate, numpy dtype of its values, is a string min/max)
    picks: tuple[tuple[int, Aggregation, Any, bool], ...]


_INT, _FLOAT, _PICKED = 0, 1, 2  # where an output's values are: io, fo, or picked values


class AggregateResult:
    """The aggregates of n rows, shaped like online.LookupResult for ViewLookup and encoders.

    Holds read_rows' matrices (fo, io, ok: (n, M)) and, per output whose value is an event's
    value (min, max, last), the picked values; everything else is decoded on use."""

    def __init__(
        self,
        index: Mapping[str, int],
        kinds: Sequence[int],
        mats: tuple[np.ndarray, np.ndarray, np.ndarray],
        picked: dict[int, tuple[np.ndarray, np.ndarray]],
        t_ns: np.ndarray,
    ) -> None:
        self._index = index  # feature -> output j
        self._kinds = kinds
        self._fo, self._io, self._ok = mats
        self._picked = picked  # j -> (values, valid)
        self.found = _trues(len(t_ns))
        self._t = t_ns

    def __len__(self) -> int:
        return len(self.found)

    @property
    def event_ts(self) -> np.ndarray:
        return self._t.copy()

    @property
    def created_ts(self) -> np.ndarray:
        return np.zeros(len(self.found), np.int64)

    @property
    def seq(self) -> np.ndarray:
        return np.zeros(len(self.found), np.int64)

    @property
    def fields(self) -> list[str]:
        return list(self._index)

    def valid(self, name: str) -> np.ndarray:
        j = self._index[name]
        return (self._picked[j][1] if j in self._picked else self._ok[:, j]).copy()

    def values(self, name: str) -> np.ndarray:
        """Values (0 / None where not valid), as online.LookupResult.values."""
        j = self._index[name]
        if j in self._picked:
            return self._picked[j][0].copy()
        return (self._io if self._kinds[j] == _INT else self._fo)[:, j].copy()

    def columns(self, names: Sequence[str]) -> list[tuple[list, list[bool]]]:
        """Per name (values with None where not valid, valid) as Python lists."""
        if len(self.found) == 1:  # the serving case: one decode of the row
            fl, il, okl = self._fo[0].tolist(), self._io[0].tolist(), self._ok[0].tolist()
            out = []
            for name in names:
                j = self._index[name]
                if j in self._picked:
                    v, ok = self._picked[j][0][0], bool(self._picked[j][1][0])
                    out.append(([v if ok else None], [ok]))
                elif okl[j]:
                    out.append(([il[j] if self._kinds[j] == _INT else fl[j]], [True]))
                else:
                    out.append(([None], [False]))
            return out
        cols = []
        for name in names:
            v = self.values(name).tolist()
            ok = self.valid(name).tolist()
            if False in ok:
                for r, good in enumerate(ok):
                    if not good:
                        v[r] = None
            cols.append((v, ok))
        return cols


def _plans(read: ViewRead, state: EventState) -> _ReadPlan:
    hit = _PLANS.get(id(read))
    if hit is None or hit[0] is not read:
        if len(_PLANS) >= 4096:
            _PLANS.clear()  # bounded; dict operations are atomic
        index = {a.name: a for a in read.view.aggregations}
        aggs = tuple(index[f] for f in read.features)
        plans = column_plans(aggs)
        kmax = max(len(p.windows) for p in plans)
        groups = np.zeros((len(plans), 1 + kmax), np.int64)
        outs = np.zeros((len(aggs), 3), np.int64)
        for g, p in enumerate(plans):
            groups[g, 0] = state.col_index[p.column]
            groups[g, 1 : 1 + len(p.windows)] = p.windows
            for pos, a, k in p.outputs:
                outs[pos] = (FUNCTION_CODES[a.function], g, k)
        kinds = tuple(
            _INT if a.function == "count" else _FLOAT if a.function in _FLOATS else _PICKED
            for a in aggs
        )
        positions = {f: j for j, f in enumerate(read.features)}
        picks = tuple(
            (j, a, VALUE_DTYPES[a.dtype], a.column_dtype == "string" and a.function != "last")
            for j, a in enumerate(aggs)
            if kinds[j] == _PICKED
        )
        windows = tuple(p.windows for p in plans)
        plan = _ReadPlan(aggs, groups, outs, windows, kinds, positions, picks)
        hit = _PLANS[id(read)] = (read, plan)
    return hit[1]


def lookup_aggregates(
    tree: AggregationTree, read: ViewRead, keys: Mapping[str, Any], hash_bits: int, now_ns: int
) -> ViewLookup:
    """The aggregates of `read` for the entities `keys` (parsed join key columns) at T = now_ns."""
    view = read.view
    ekeys, found = engine_keys(view, tree, keys, hash_bits)
    n = len(ekeys)
    end = np.empty(n, dtype=np.int64)
    end.fill(now_ns)
    state = tree.events
    plan = _plans(read, state)
    mats, picked = state.read(_compute, plan, ekeys, found, end, view.hop_ns)
    result = AggregateResult(plan.index, plan.kinds, mats, picked, end)
    return ViewLookup(read, result, result.found, None)


def _compute(
    a: _Arrays,
    n_events: int,
    plan: _ReadPlan,
    ekeys: np.ndarray,
    found: np.ndarray | None,
    end: np.ndarray,
    hop_ns: int,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Caller holds the state's lock: read_rows' matrices (one kernel call) and the picked
    values of min, max and last outputs."""
    known = _trues(len(ekeys)) if found is None else found
    fo, io, ok = K.read_rows(
        a.hkeys, a.hvals, a.head, a.nxt, a.ts, a.fv, a.ov, a.okm, ekeys, known, end, hop_ns,
        plan.groups, plan.outs,
    )  # fmt: skip
    n = len(ekeys)
    picked: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for j, agg, kind, extreme in plan.picks:
        valid = ok[:, j]
        if extreme:
            g, k = int(plan.outs[j, 1]), int(plan.outs[j, 2])
            ents = K.find_entities(a.hkeys, a.hvals, ekeys)
            ents[~known] = -1
            starts = window_starts(end, plan.windows[g], hop_ns)[:, k]
            picked[j] = _string_extreme(a, agg, ents, end, starts)
            continue
        col = a.vals[agg.column]
        if n == 1:  # the serving case: scalar reads, no fancy indexing
            if kind is object:
                vals = np.empty(1, dtype=object)
                vals[0] = string_at(a, agg.column, int(col[io[0, j]])) if valid[0] else None
            else:
                vals = np.zeros(1, kind)
                if valid[0]:
                    vals[0] = col[io[0, j]]
            picked[j] = (vals, valid)
            continue
        vals = np.full(n, None, dtype=object) if kind is object else np.zeros(n, kind)
        if kind is object:  # strings: decode the references
            if valid.any():
                vals[valid] = strings(a, agg.column, col[io[:, j][valid]])
        elif valid.any():
            vals[valid] = col[io[:, j][valid]]
        picked[j] = (vals, valid)
    return (fo, io, ok), picked


def _trues(n: int) -> np.ndarray:
    """n True values (np.ones costs more on the one-row serving path)."""
    out = np.empty(n, dtype=bool)
    out.fill(True)
    return out


def _string_extreme(
    a: _Arrays, agg: Aggregation, ents: np.ndarray, end: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """min/max of a string column per row: over the window's non-null values (few per entity)."""
    vals, valid = a.vals[agg.column], a.valid[agg.column]
    out = np.full(len(ents), None, dtype=object)
    pick = min if agg.function == "min" else max
    for r in range(len(ents)):
        idx = K.chain_window(a.head, a.nxt, a.ts, int(ents[r]), int(end[r]), int(starts[r]))
        idx = idx[valid[idx]]
        if len(idx):
            out[r] = pick(s for s in strings(a, agg.column, vals[idx]) if s is not None)
    return out, np.array([v is not None for v in out.tolist()], dtype=bool)
