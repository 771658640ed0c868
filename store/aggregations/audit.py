"""The audit of an aggregation view: the online aggregates at T equal the aggregation computed
from the offline store's events for T.

T is the newest event time of the view (the watermark), where every window is full of recent
events. The entities compared are those with an event in the longest window before T (any
other reads count 0 and nulls on both sides by definition). Online values come from the
EventState (store/aggregations/online.py), offline ones from the events in Parquet and the
offline buffer (store/aggregations/export.py). count, min, max and last must be equal; sum,
mean and stddev are compared within REL_TOL: both sides add the same events in the same order
(newest first by the version order), so they agree to the bit today, but a float sum depends
on its order, and the tolerance keeps the audit meaningful if either side changes how it adds
(tiles of partial sums would). The caller holds ingests (FeatureStore.audit).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from offline import OfflineStore
from store.aggregations.events import AggregationTree
from store.aggregations.export import aggregate_columns
from store.aggregations.finish import window_starts
from store.aggregations.online import lookup_aggregates
from store.batch import EVENT_TS
from store.definitions import FeatureView
from store.dtypes import TIMESTAMP
from store.features import ViewRead

REL_TOL = 1e-9
_FLOAT_FUNCTIONS = ("sum", "mean", "stddev")


def audit_aggregates(
    view: FeatureView, off: OfflineStore, storage: str, tree: AggregationTree, hash_bits: int
) -> dict[str, Any]:
    """{"aggregate_rows": entities compared, "aggregate_mismatches": n, "examples": [...]}."""
    state = tree.events
    report: dict[str, Any] = {"aggregate_rows": 0, "aggregate_mismatches": 0, "examples": []}
    if state.n == 0:
        return report
    t = int(state.watermark)
    longest = max(a.window_ns for a in view.aggregations)
    start = int(window_starts(np.array([t]), [longest], view.hop_ns)[0, 0])
    keys = (
        off.scan(storage, start=start + 1, end=t + 1, columns=view.join_keys)
        .read_all()
        .group_by(view.join_keys)
        .aggregate([])
    )
    n = keys.num_rows
    report["aggregate_rows"] = n
    if n == 0:
        return report
    names = tuple(a.name for a in view.aggregations)
    read = ViewRead(view, names, names, tuple(a.dtype for a in view.aggregations))
    parsed = {
        k: (keys.column(k).to_numpy() if d == "int64" else keys.column(k).to_pylist())
        for k, d in view.keys
    }
    online = lookup_aggregates(tree, read, parsed, hash_bits, t).result
    rows = keys.append_column(EVENT_TS, pa.array(np.full(n, t, np.int64)).cast(TIMESTAMP))
    offline = aggregate_columns(off, storage, view, names, rows, None)
    for agg, col in zip(view.aggregations, offline, strict=True):
        want = col.to_pylist()
        got_vals, got_ok = online.values(agg.name).tolist(), online.valid(agg.name).tolist()
        for r in range(n):
            got = got_vals[r] if got_ok[r] else None
            if not _equal(want[r], got, agg.function in _FLOAT_FUNCTIONS, agg.dtype):
                report["aggregate_mismatches"] += 1
                if len(report["examples"]) < 5:
                    key = {k: keys.column(k)[r].as_py() for k in view.join_keys}
                    report["examples"].append(
                        {"key": key, "feature": agg.name, "offline": want[r], "online": got, "t": t}
                    )
    return report


def _equal(want: Any, got: Any, approx: bool, dtype: str) -> bool:
    if want is None or got is None:
        return want is None and got is None
    if dtype == "timestamp" and not isinstance(want, int):
        want = pa.scalar(want, TIMESTAMP).cast(pa.int64()).as_py()
    if approx:
        return math.isclose(float(want), float(got), rel_tol=REL_TOL, abs_tol=0.0)
    if isinstance(want, float) and isinstance(got, float) and math.isnan(want):
        return math.isnan(got)
    return bool(want == got)
