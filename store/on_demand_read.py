"""Online reads of on-demand features: request fields + source lookups -> computed columns.

`read_on_demand` runs after a request's feature-view lookups: it takes the request fields from
the entity input (columnar `{field: [values]}` or rows, as the join keys), reads each source
view once (reusing a lookup of the same view the request already made), evaluates every
requested program once over all rows, and returns one ViewLookup per on-demand view, whose
result (`OnDemandResult`) the response machinery reads like an engine's. Every row of an
on-demand view is "found": a feature is PRESENT where its value is non-null, NULL_VALUE where
it is null (a source entity that is not found, or older than its view's ttl, reads as nulls).
Event timestamps are the epoch. A one-entity request with plain request values takes the
one-row path of store/on_demand_row.py (Python values, no numpy), which gives the same values.
Stateless; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import store.online_read as online_read  # imports this module: use it at call time
from online import LSMTree
from store.errors import ValidationError
from store.expressions import ALL_VALID, Pair, widen
from store.features import ViewRead
from store.on_demand import OnDemandPlan
from store.on_demand_row import evaluate_row, request_row, source_row
from store.online_response import ViewLookup
from store.snapshot import Snapshot

_NUMPY = {"int64": np.int64, "float64": np.float64, "bool": np.bool_}
_KINDS = {"int64": "iu", "float64": "iuf", "bool": "b"}  # numpy kinds a request array may have


class OnDemandResult:
    """Computed columns in the shape of online.LookupResult: `values`, `valid`, `columns`,
    `event_ts` (the epoch: 0) and `found` (every row). Owns its arrays."""

    def __init__(self, cols: dict[str, Pair], n: int) -> None:
        self._cols = cols
        self.found = np.empty(n, dtype=bool)  # np.ones costs more on the one-row serving path
        self.found.fill(True)

    def __len__(self) -> int:
        return len(self.found)

    @property
    def event_ts(self) -> np.ndarray:
        return np.zeros(len(self.found), dtype=np.int64)

    def valid(self, name: str) -> np.ndarray:
        return self._cols[name][1].copy()

    def values(self, name: str) -> np.ndarray:
        return self._cols[name][0]

    def columns(self, names: Sequence[str]) -> list[tuple[list, list[bool]]]:
        """Per name (values, valid) as new Python lists; None where not valid."""
        out = []
        for name in names:
            values, valid = self._cols[name]
            vals = values.tolist()
            ok = valid.tolist()
            if False in ok:
                for r, v in enumerate(ok):
                    if not v:
                        vals[r] = None
            out.append((vals, ok))
        return out


class OnDemandLookup(ViewLookup):
    """A ViewLookup of computed columns: every row is found and live (no ttl)."""

    def __init__(self, read: ViewRead, result: OnDemandResult) -> None:
        # the state ViewLookup.__init__ derives, known here without a pass over the rows
        self.read = read
        self.result = result
        self.found = result.found
        self.expired = None
        self.found_list = self.live_list = [True] * len(result.found)
        self.live_all = True
        self.dead_rows = []


def read_on_demand(
    snap: Snapshot,
    od: OnDemandPlan,
    entities: Any,
    keys: Mapping[str, Any],
    n: int,
    lookups: Sequence[ViewLookup],
    hash_bits: int,
    now_ns: int,
) -> tuple[list[ViewLookup], int]:
    """One ViewLookup per on-demand view of `od`, and the row count (the request fields' when
    the request has no join keys). ValidationError names a missing or mistyped request field."""
    if n == 1 and keys and od.row is not None:
        env = request_row(entities, od)
        if env is not None:
            return _read_row(snap, od, env, keys, lookups, hash_bits, now_ns), 1
    request, n = request_pairs(entities, od, n, bool(keys))
    sources = _source_lookups(snap, od, keys, lookups, hash_bits, now_ns)
    computed = evaluate_on_demand(
        od, request, lambda view, feature: _source_pair(sources[view], feature), n
    )
    out: list[ViewLookup] = [
        OnDemandLookup(r.read, OnDemandResult(cols, n))
        for r, cols in zip(od.reads, computed, strict=True)
    ]
    return out, n


def evaluate_on_demand(
    od: OnDemandPlan,
    request: Mapping[str, Pair],
    source: Callable[[str, str], Pair],
    n: int,
) -> list[dict[str, Pair]]:
    """Per OnDemandRead of `od` (in order), {feature: (values, valid)} of n rows: each program
    run once over all rows. `request`: the request fields' pairs (request_pairs); `source(view,
    feature)`: a source feature's pair, widened, ALL_VALID when it has no null (called once per
    source feature). Any caller that gathers the inputs elsewhere (a router) computes what a
    store computes."""
    pairs: dict[tuple[str | None, str], Pair] = {(None, k): v for k, v in request.items()}
    out: list[dict[str, Pair]] = []
    for r in od.reads:
        cols: dict[str, Pair] = {}
        for feat, program, inputs in zip(r.read.features, r.programs, r.inputs, strict=True):
            args = []
            for key in inputs:
                pair = pairs.get(key)
                if pair is None:
                    view, name = key
                    assert view is not None  # request fields are all in `pairs`
                    pair = pairs[key] = source(view, name)
                args.append(pair)
            cols[feat] = program.evaluate(args, n)
        out.append(cols)
    return out


def _read_row(
    snap: Snapshot,
    od: OnDemandPlan,
    env: list[Any],
    keys: Mapping[str, Any],
    lookups: Sequence[ViewLookup],
    hash_bits: int,
    now_ns: int,
) -> list[ViewLookup]:
    """read_on_demand of one entity: `env` holds the request fields; the source rows follow."""
    for read in od.sources.reads if od.sources is not None else ():
        name = read.view.name
        for lk in lookups:  # the request's own lookup of the view, as _source_lookups picks
            if lk.read.view.name == name and (
                not read.view.is_aggregation or set(read.features) <= set(lk.read.features)
            ):
                break
        else:
            lk = _lookup(snap.trees[name], read, keys, hash_bits, now_ns)
        env += source_row(lk, read.features, read.dtypes)
    return evaluate_row(od, env)


def _source_lookups(
    snap: Snapshot,
    od: OnDemandPlan,
    keys: Mapping[str, Any],
    lookups: Sequence[ViewLookup],
    hash_bits: int,
    now_ns: int,
) -> dict[str, ViewLookup]:
    """The lookup of each source view: the request's own when it read that view (and it holds
    the needed features), else one batched lookup."""
    if od.sources is None:
        return {}
    done = {lk.read.view.name: lk for lk in lookups}
    out = {}
    for read in od.sources.reads:
        name = read.view.name
        lk = done.get(name)
        if lk is not None and (
            not read.view.is_aggregation  # an engine row holds every feature
            or set(read.features) <= set(lk.read.features)
        ):
            out[name] = lk
        else:
            out[name] = _lookup(snap.trees[name], read, keys, hash_bits, now_ns)
    return out


def _lookup(
    tree: LSMTree, read: ViewRead, keys: Mapping[str, Any], hash_bits: int, now_ns: int
) -> ViewLookup:
    """One view's lookup, routed as store.online_read routes the request's own reads."""
    if read.view.is_aggregation:
        return online_read.lookup_aggregates(tree, read, keys, hash_bits, now_ns)  # type: ignore[arg-type]
    return online_read.lookup_view(tree, read, keys, hash_bits, now_ns)


def _source_pair(lk: ViewLookup, feature: str) -> Pair:
    """(values, valid) of one source feature: null where not found or older than the ttl."""
    valid = lk.result.valid(feature)
    if not lk.live_all:
        valid = valid & lk.live
    if valid[0] if len(valid) == 1 else valid.all():
        valid = ALL_VALID  # lets the program skip its mask operations
    return widen(lk.result.values(feature)), valid


# ----------------------------------------------------------------------------- request fields


def request_pairs(
    entities: Any, od: OnDemandPlan, n: int, has_keys: bool
) -> tuple[dict[str, Pair], int]:
    """{field: (values, valid)} of the request fields of `od` in `entities` (columnar or rows),
    and the row count: `n` when the request has join keys, else the fields' length."""
    out: dict[str, Pair] = {}
    for name, dtype in od.request:
        values = _field_values(entities, name, od)
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise ValidationError(
                f"request field {name!r} must be a list of values, one per entity row", column=name
            )
        if not has_keys and not out:
            n = len(values)
        if len(values) != n:
            raise ValidationError(
                f"request field {name!r} has {len(values)} value(s); the entities have {n} row(s)",
                column=name,
            )
        out[name] = request_array(name, dtype, values)
    return out, n


def _field_values(entities: Any, name: str, od: OnDemandPlan) -> Any:
    if type(entities) is dict or isinstance(entities, Mapping):
        if name not in entities:
            views = ", ".join(repr(r.view.name) for r in od.reads)
            raise ValidationError(
                f"request field {name!r} is missing: on-demand view {views} needs it; send it "
                "with the entity keys (a list with one value per entity row)",
                column=name,
            )
        return entities[name]
    values = []
    for i, row in enumerate(entities):
        if not isinstance(row, Mapping) or name not in row:
            views = ", ".join(repr(r.view.name) for r in od.reads)
            raise ValidationError(
                f"entity row {i} lacks request field {name!r} (on-demand view {views} needs it)",
                column=name,
                row=i,
            )
        values.append(row[name])
    return values


def request_array(name: str, dtype: str, values: Any) -> Pair:
    """A request field's values as (values, valid); None is null. ValidationError naming the
    field and row of a value of the wrong type (a bool is not a number)."""
    if dtype != "string" and not (isinstance(values, list) and None in values):
        try:
            arr = np.asarray(values)
        except (ValueError, TypeError):
            arr = None
        if arr is not None and arr.ndim == 1 and (arr.dtype.kind in _KINDS[dtype] or not len(arr)):
            if arr.dtype.kind == "u" and len(arr) and arr.max() >= 2**63:
                raise ValidationError(f"request field {name!r}: a value exceeds int64", column=name)
            return arr.astype(_NUMPY[dtype], copy=False), ALL_VALID
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    valid = np.array([v is not None for v in items], dtype=bool)
    for i, v in enumerate(items):
        if v is not None and not _fits(dtype, v):
            raise ValidationError(
                f"request field {name!r}, row {i}: {v!r} is not a {dtype}", column=name, row=i
            )
    if dtype == "string":
        return np.array(items, dtype=object), valid
    zero = {"int64": 0, "float64": 0.0, "bool": False}[dtype]
    return np.array([zero if v is None else v for v in items], dtype=_NUMPY[dtype]), valid


def _fits(dtype: str, v: Any) -> bool:
    if dtype == "string":
        return isinstance(v, str)
    if dtype == "bool":
        return isinstance(v, (bool, np.bool_))
    if isinstance(v, (bool, np.bool_)):
        return False
    if dtype == "int64":
        return isinstance(v, (int, np.integer)) and -(2**63) <= int(v) < 2**63
    return isinstance(v, (int, float, np.integer, np.floating))
