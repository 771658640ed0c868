"""The consistency audit of one view: offline latest row per entity vs the online engine's scan.

Both sides are joined on the original entity key (the int64 key decoded from the online key, or
the canonical key text stored online in `_entity_key`), then event_timestamp, created_timestamp,
seq and every feature value are compared (NaN equals NaN, null equals null). Pure function over
two Arrow tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from store.definitions import FeatureView
from store.keys import ENTITY_KEY_FIELD, canonical_keys, key_to_int

MAX_EXAMPLES = 5


def _offline_key(view: FeatureView, table: pa.Table) -> np.ndarray:
    if not view.hashed:
        return table.column(view.keys[0][0]).to_numpy().astype(np.int64)
    cols = [table.column(k).to_pylist() for k, _ in view.keys]
    return canonical_keys(cols, [t for _, t in view.keys])


def _online_key(view: FeatureView, table: pa.Table) -> np.ndarray:
    if not view.hashed:
        return key_to_int(table.column("key").to_numpy())
    return np.asarray(table.column(ENTITY_KEY_FIELD).to_pylist(), dtype=object)


def _as_numpy(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid) of a column; vectors as (n, N) arrays, timestamps as int64."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    valid = np.asarray(col.is_valid())
    t = col.type
    if pa.types.is_timestamp(t):
        col = col.cast(pa.int64())
    if pa.types.is_fixed_size_list(t):
        flat = col.flatten() if col.offset == 0 and col.null_count == 0 else None
        if flat is None:
            vals = np.array(
                [v if v is not None else [np.nan] * t.list_size for v in col.to_pylist()],
                dtype=np.float32,
            ).reshape(len(col), t.list_size)
        else:
            vals = flat.to_numpy(zero_copy_only=False).reshape(len(col), t.list_size)
        return vals, valid
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return np.asarray(col.to_pylist(), dtype=object), valid
    return col.to_numpy(zero_copy_only=False), valid


def _equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    eq = a == b
    if a.dtype.kind == "f":
        eq = eq | (np.isnan(a) & np.isnan(b))
    if eq.ndim > 1:
        eq = eq.all(axis=tuple(range(1, eq.ndim)))
    return np.asarray(eq, dtype=bool)


def audit_view(view: FeatureView, offline: pa.Table, online: pa.Table) -> dict[str, Any]:
    """{"entities", "online_entities", "mismatches", "examples"} for one view.

    offline: off.latest_per_entity(view); online: tree.scan(). An entity on one side only, or
    any differing column, counts as one mismatch.
    """
    off_key = _offline_key(view, offline)
    on_key = _online_key(view, online)
    off_order = np.argsort(off_key, kind="stable")
    on_order = np.argsort(on_key, kind="stable")
    off_sorted, on_sorted = off_key[off_order], on_key[on_order]
    in_both_off = np.isin(off_sorted, on_sorted)
    in_both_on = np.isin(on_sorted, off_sorted)
    examples: list[dict[str, Any]] = []
    only_off = off_sorted[~in_both_off]
    only_on = on_sorted[~in_both_on]
    for k in only_off[:MAX_EXAMPLES].tolist():
        examples.append({"entity": k, "problem": "offline only"})
    for k in only_on[: max(0, MAX_EXAMPLES - len(examples))].tolist():
        examples.append({"entity": k, "problem": "online only"})
    off_idx = off_order[in_both_off]
    on_idx = on_order[in_both_on]
    if len(off_idx) != len(on_idx):  # duplicate entities on one side
        dup = len(off_idx) - len(np.unique(off_key)) or len(on_idx) - len(np.unique(on_key))
        examples.append({"entity": None, "problem": f"{abs(dup)} duplicate entities"})
        return _report(view, offline, online, len(only_off) + len(only_on) + abs(dup), examples)
    bad = np.zeros(len(off_idx), dtype=bool)
    bad_cols: dict[int, list[str]] = {}
    pairs = [
        ("event_timestamp", "event_timestamp"),
        ("created_timestamp", "created_timestamp"),
        ("_seq", "seq"),
    ]
    pairs += [(f.name, f.name) for f in view.features]
    on_names = set(online.column_names)
    for off_name, on_name in pairs:
        a, av = _as_numpy(offline.column(off_name).take(off_idx))
        if on_name in on_names:
            b, bv = _as_numpy(online.column(on_name).take(on_idx))
        else:  # a feature the online side has never seen reads null
            b, bv = a, np.zeros(len(on_idx), dtype=bool)
        same = (av == bv) & (~av | _equal(a, b))
        for i in np.flatnonzero(~same)[:MAX_EXAMPLES].tolist():
            bad_cols.setdefault(i, []).append(off_name)
        bad |= ~same
    for i in np.flatnonzero(bad)[: max(0, MAX_EXAMPLES - len(examples))].tolist():
        k = off_sorted[in_both_off][i]
        examples.append(
            {
                "entity": k.item() if hasattr(k, "item") else k,
                "problem": "differs",
                "columns": bad_cols.get(i, []),
            }
        )
    return _report(view, offline, online, int(bad.sum()) + len(only_off) + len(only_on), examples)


def _report(
    view: FeatureView, offline: pa.Table, online: pa.Table, mismatches: int, examples: list
) -> dict[str, Any]:
    del view
    return {
        "entities": offline.num_rows,
        "online_entities": online.num_rows,
        "mismatches": mismatches,
        "examples": examples,
    }
