"""Brute-force pandas oracle of aggregation views, and random data for the oracle tests."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from store.aggregations.spec import Aggregation

MIN = 60 * 10**9
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
REL_TOL = 1e-9  # sums, means, stddevs (documented tolerance; the two sides add in one order)


def window_start(t: int, w: int, hop: int) -> int:
    s = t - w
    return (s // hop) * hop if hop else s


def oracle(
    events: pd.DataFrame,
    keys: Sequence[str],
    rows: pd.DataFrame,
    aggs: Sequence[Aggregation],
    hop: int,
) -> dict[str, list[Any]]:
    """events: key columns, ts, created, seq, row (ints) and the event columns (None = null);
    rows: key columns and t (int ns). Returns {feature: [value per row]}."""
    groups = {}
    for k, g in events.groupby(list(keys), sort=False):
        g = g.sort_values(["ts", "created", "seq", "row"])  # version order: last is newest
        cols = {c: g[c].to_numpy(dtype=object) for c in {a.column for a in aggs}}
        groups[k if isinstance(k, tuple) else (k,)] = (g["ts"].to_numpy(np.int64), cols)
    out: dict[str, list[Any]] = {a.name: [] for a in aggs}
    key_rows = list(zip(*(rows[c].tolist() for c in keys), strict=True))
    for k, t in zip(key_rows, rows["t"].tolist(), strict=True):
        g = groups.get(tuple(k))
        for a in aggs:
            if g is None:
                out[a.name].append(0 if a.function == "count" else None)
                continue
            ts, cols = g
            s = window_start(int(t), a.window_ns, hop)
            inside = (ts > s) & (ts <= int(t))
            out[a.name].append(_agg(cols[a.column][inside], a))
    return out


def _agg(w: np.ndarray, a: Aggregation) -> Any:
    """w: the window's values in version order (None or NaN = null)."""
    if a.function == "count":
        return len(w)
    vals = [v for v in w.tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None
    if a.function == "sum":
        return float(sum(float(v) for v in vals))
    if a.function == "mean":
        return float(sum(float(v) for v in vals)) / len(vals)
    if a.function == "stddev":
        return float(np.std([float(v) for v in vals], ddof=1)) if len(vals) > 1 else None
    if a.function == "min":
        return min(vals)
    if a.function == "max":
        return max(vals)
    return vals[-1]


def same(a: Any, b: Any) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None or (isinstance(a, float) and math.isnan(a))) and (
            b is None or (isinstance(b, float) and math.isnan(b))
        )
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=1e-9)
    if isinstance(a, pd.Timestamp):
        a = a.value
    if isinstance(b, pd.Timestamp):
        b = b.value
    return bool(a == b)


def random_events(rng: np.random.Generator, n: int, users: int, span: int) -> pd.DataFrame:
    """Events of `users` entities over [T0, T0 + span): many ties (times on a 10-minute grid),
    nulls, negative amounts, a string and an int column."""
    ts = T0 + rng.integers(0, span // (10 * MIN), n) * 10 * MIN
    amount = rng.normal(50, 30, n).round(2)
    amount_obj = np.where(rng.random(n) < 0.15, None, amount).astype(object)
    merchants = np.array(["acme", "bolt", "crux", "dune", "echo"], dtype=object)
    merchant = np.where(rng.random(n) < 0.1, None, merchants[rng.integers(0, 5, n)]).astype(object)
    qty = rng.integers(-5, 100, n).astype(object)
    qty[rng.random(n) < 0.1] = None
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, users, n),
            "region": np.array(["eu", "us"], dtype=object)[rng.integers(0, 2, n)],
            "ts": ts,
            # created ties too: three distinct values, so seq and row break many ties
            "created": T0 + rng.integers(0, 3, n),
            "amount": amount_obj,
            "merchant": merchant,
            "qty": qty,
        }
    )
