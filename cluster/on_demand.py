"""On-demand views through the router: sources read by the normal scatter, expressions evaluated
by the router.

A tablet can compute an on-demand feature only when every source row of a request row lives in
that row's partition: all the request's views (and the on-demand views' sources) share one join
key tuple and none is placed otherwise (`partition_by`, `replicate`). Any other request that
reads an on-demand view is answered here (`read_on_demand`, called first by `Router.read`):
1. plan the request as a single root does (store/features.py `plan_features`: the same errors,
   the same output columns in the same order: join keys, the views' features, then the
   on-demand features);
2. read the plain features and every source feature the expressions use in ONE scattered read
   through the router (full feature names, join keys only): one routing group per key tuple,
   each row on its partition's replica, read-your-writes as for any read;
3. evaluate each compiled program (store/expressions) over all rows with the request fields
   taken from `entities` (store/on_demand_read.py `request_pairs`: the same checks and errors),
   a source value being null where its status is not PRESENT (not found, null, or older than its
   view's ttl), as `store.on_demand_read` does;
4. answer Feast's JSON: the key and plain columns from the scattered read, the computed columns
   PRESENT where non-null, NULL_VALUE where null, event times the epoch, non-finite floats as
   Feast's strings (app/feast_json.py's shape).
Requests without on-demand views, or whose on-demand views tablets can compute, return None here
and take the router's ordinary path. Pure functions over the router's state; runs on the
router's event loop; the plan cache is a bounded dict whose single operations are atomic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from store import Definitions
from store.expressions import ALL_VALID, Pair, widen
from store.features import FeaturePlan, plan_features
from store.on_demand_read import evaluate_on_demand, request_array, request_pairs

if TYPE_CHECKING:
    from cluster.router import Router

EPOCH_RFC3339 = "1970-01-01T00:00:00Z"  # Feast's event time of a computed column
_FLOATS_IN = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_CACHE_MAX = 1024
# (id of the definitions, features) -> (definitions, does the router compute them?)
_needs: dict[tuple[int, Any], tuple[Definitions, bool]] = {}


def needs_router(defs: Definitions, features: str | Sequence[str]) -> bool:
    """True when the request reads an on-demand view that a tablet cannot compute alone."""
    if not defs.on_demand_views:
        return False
    key = (id(defs), features if isinstance(features, str) else tuple(features))
    hit = _needs.get(key)
    if hit is not None and hit[0] is defs:
        return hit[1]
    answer = _needs_router(defs, features)
    if len(_needs) >= _CACHE_MAX:
        _needs.clear()
    _needs[key] = (defs, answer)
    return answer


def _needs_router(defs: Definitions, features: str | Sequence[str]) -> bool:
    if isinstance(features, str):
        service = defs.feature_services.get(features)
        refs: Sequence[str] = service.features if service is not None else [features]
    else:
        refs = features
    names = [r.partition(":")[0] for r in refs if isinstance(r, str)]
    on_demand = [defs.on_demand_views[n] for n in names if n in defs.on_demand_views]
    if not on_demand:
        return False
    views = {n for n in names if n in defs.feature_views}
    views |= {s for odv in on_demand for s in odv.sources if s in defs.feature_views}
    keys = {tuple(defs.feature_views[v].join_keys) for v in views}
    placed = any(
        defs.feature_views[v].partition_by or defs.feature_views[v].replicate for v in views
    )
    return len(keys) > 1 or placed


async def read_on_demand(
    router: Router,
    body: Mapping[str, Any],
    features: str | Sequence[str],
    entities: Mapping[str, Sequence[Any]],
    min_position: Mapping[int, int],
) -> tuple[int, bytes] | None:
    """The router's answer to a read of on-demand views tablets cannot compute (module
    docstring), or None for the ordinary path. Errors are the single root's (StoreError)."""
    defs = router.parsed
    if not needs_router(defs, features):
        return None
    full = bool(body.get("full_feature_names", False))
    plan = plan_features(defs, features, full)
    od = plan.on_demand
    if od is None:
        return None
    raw_entities = body.get("entities") or {}
    n = len(next(iter(entities.values()))) if entities else 0
    request, n = request_pairs(raw_entities, od, n, bool(plan.join_keys))
    refs = list(dict.fromkeys([*plan.refs, *od.source_refs]))
    columns: dict[str, dict[str, Any]] = {}
    if refs:
        keys = [k for k, _ in plan.join_keys]
        sub = {
            "features": refs,
            "entities": {k: raw_entities[k] for k in keys if k in raw_entities},
            "full_feature_names": True,
        }
        typed = {k: entities[k] for k in keys if k in entities}
        status, content = await router.read(sub, refs, typed, min_position)
        if status != 200:
            return status, content
        answer = orjson.loads(content)
        for name, col in zip(answer["metadata"]["feature_names"], answer["results"], strict=True):
            columns[name] = col
    return 200, orjson.dumps(_assemble(defs, plan, columns, request, n))


def _assemble(
    defs: Definitions,
    plan: FeaturePlan,
    columns: Mapping[str, dict[str, Any]],
    request: Mapping[str, Pair],
    n: int,
) -> dict[str, Any]:
    """Feast's JSON of the whole request: keys, plain features, computed features."""
    od = plan.on_demand
    assert od is not None
    names = [k for k, _ in plan.join_keys if k in columns]
    results = [columns[k] for k in names]
    for r in plan.reads:
        for feat, name in zip(r.features, r.names, strict=True):
            names.append(name)
            results.append(columns[f"{r.view.name}__{feat}"])
    epoch = [EPOCH_RFC3339] * n
    computed = evaluate_on_demand(
        od, request, lambda view, feature: _source_pair(defs, view, feature, columns, n), n
    )
    for read, cols in zip(od.reads, computed, strict=True):
        for feat, name in zip(read.read.features, read.read.names, strict=True):
            values, valid = cols[feat]
            names.append(name)
            results.append(_computed(values, valid, n, epoch))
    return {"metadata": {"feature_names": names}, "results": results}


def _source_pair(
    defs: Definitions, view: str, feature: str, columns: Mapping[str, dict[str, Any]], n: int
) -> Pair:
    """(values, valid) of one source feature from the scattered read's JSON column."""
    col = columns[f"{view}__{feature}"]
    dtype = defs.feature_views[view].served_index[feature].dtype
    ok = [s == "PRESENT" for s in col["statuses"]]
    vals = [v if good else None for v, good in zip(col["values"], ok, strict=True)]
    if dtype.startswith("float"):
        vals = [_FLOATS_IN.get(v, v) if isinstance(v, str) else v for v in vals]
        dtype = "float64"
    elif dtype.startswith("int"):
        dtype = "int64"
    values, valid = request_array(f"{view}:{feature}", dtype, vals)
    if valid is not ALL_VALID and bool(np.all(valid)):
        valid = ALL_VALID
    return widen(values), valid


def _computed(values: np.ndarray, valid: np.ndarray, n: int, epoch: list[str]) -> dict[str, Any]:
    """One computed column as Feast's JSON (app/feast_json.py's encoding of its values)."""
    ok = np.broadcast_to(np.asarray(valid, dtype=bool), (n,)).tolist()
    vals = values.tolist() if isinstance(values, np.ndarray) else list(values)
    if len(vals) != n:
        vals = list(np.broadcast_to(np.asarray(values), (n,)).tolist())
    out: list[Any] = []
    for v, good in zip(vals, ok, strict=True):
        if not good:
            out.append(None)
        elif isinstance(v, float) and not math.isfinite(v):
            out.append("NaN" if v != v else ("Infinity" if v > 0 else "-Infinity"))
        else:
            out.append(v)
    statuses = ["PRESENT" if good else "NULL_VALUE" for good in ok]
    return {"values": out, "statuses": statuses, "event_timestamps": epoch}
