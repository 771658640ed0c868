"""From window stats (store/aggregations/_kernels.py) to aggregate feature values.

`column_plans` groups the requested aggregate features of a view by event column (one kernel
call per column); `window_starts` turns the read times T into window starts (hop-aligned);
`finished` turns the kernels' finished matrices into values and validity per output (the
export's path; the online read decodes the same matrices in store/aggregations/online.py). Both
finish their stats with one numba function (`_kernels._finish_one`), so a value is computed by
the same arithmetic on both sides.
Pure functions; plans are immutable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from store.aggregations import _kernels as K
from store.aggregations.spec import Aggregation

FUNCTION_CODES = {
    "count": K.F_COUNT, "sum": K.F_SUM, "mean": K.F_MEAN, "stddev": K.F_STDDEV,
    "min": K.F_MIN, "max": K.F_MAX, "last": K.F_LAST,
}  # fmt: skip
# numpy dtype of values handed out for each result dtype (timestamps as int64 ns, strings object)
VALUE_DTYPES = {
    "int32": np.int32,
    "int64": np.int64,
    "float32": np.float32,
    "float64": np.float64,
    "bool": np.bool_,
    "timestamp": np.int64,
    "string": object,
}


@dataclass(frozen=True)
class ColumnPlan:
    """The requested aggregates of one event column."""

    column: str
    dtype: str  # the event column's dtype
    windows: tuple[int, ...]  # distinct window lengths (ns), ascending
    outputs: tuple[tuple[int, Aggregation, int], ...]  # (output position, aggregate, window k)
    codes: np.ndarray  # per output: its function code (_kernels.F_*)
    ks: np.ndarray  # per output: its window k
    windows_ns: np.ndarray  # `windows` as int64


def column_plans(aggs: Sequence[Aggregation]) -> list[ColumnPlan]:
    """`aggs` (in output order) grouped by column, first use order."""
    by_col: dict[str, list[tuple[int, Aggregation]]] = {}
    for pos, a in enumerate(aggs):
        by_col.setdefault(a.column, []).append((pos, a))
    plans = []
    for col, items in by_col.items():
        windows = tuple(sorted({a.window_ns for _, a in items}))
        outputs = tuple((pos, a, windows.index(a.window_ns)) for pos, a in items)
        codes = np.array([FUNCTION_CODES[a.function] for _, a, _ in outputs], np.int64)
        ks = np.array([k for _, _, k in outputs], np.int64)
        plans.append(
            ColumnPlan(
                col, items[0][1].column_dtype, windows, outputs, codes, ks,
                np.array(windows, np.int64),
            )
        )  # fmt: skip
    return plans


def window_starts(end: np.ndarray, windows: Sequence[int], hop_ns: int) -> np.ndarray:
    """(n, K) exclusive window starts T - w (aligned down to the hop when set), K = windows in
    ascending length, so starts descend along a row."""
    starts = end[:, None] - np.asarray(windows, dtype=np.int64)[None, :]
    if hop_ns:
        starts = np.floor_divide(starts, hop_ns) * hop_ns
    return np.ascontiguousarray(starts)


def finished(
    plan: ColumnPlan,
    fo: np.ndarray,
    io: np.ndarray,
    ok: np.ndarray,
    take: Callable[[np.ndarray], np.ndarray],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(values, valid) per output of `plan` from _kernels.finish_stats' arrays; `take(idx)`
    returns the column's values at event indices idx (>= 0) as VALUE_DTYPES[column dtype].
    Invalid rows hold 0 (None for strings)."""
    out = []
    for j, (_, agg, _) in enumerate(plan.outputs):
        f = agg.function
        valid = ok[:, j]
        if f == "count":
            out.append((io[:, j], valid))
        elif f in ("sum", "mean", "stddev"):
            out.append((fo[:, j], valid))
        else:
            dtype = VALUE_DTYPES[agg.dtype]
            n = len(valid)
            vals = np.full(n, None, dtype=object) if dtype is object else np.zeros(n, dtype)
            if n == 1:
                if valid[0]:
                    vals[0] = take(io[:, j])[0]
            elif valid.any():
                vals[valid] = take(io[:, j][valid])
            out.append((vals, valid))
    return out
