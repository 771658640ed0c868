"""Aggregates of an export or historical read: for each entity row, the aggregates at T = the
row's event_timestamp, computed from the offline store's events as of a seq.

`aggregate_columns` reads the view's events that the rows' windows can touch (partition
pruning on [min T - longest window - hop, max T], `_seq <= as_of_seq`), sorts them by
(entity, version order) in linear time (store/aggregations/_sort_kernels.py), and runs one
kernel per event column
(store/aggregations/_kernels.py `sorted_stats`): each row visits the events of its longest window
newest first, the same events in the same order as the online read, and the values are finished
by the same code (store/aggregations/finish.py). Pure function of its inputs; safe from any
thread (the offline store's scans are).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from offline import OfflineStore
from store.aggregations import _kernels as K
from store.aggregations import _sort_kernels as S
from store.aggregations.finish import VALUE_DTYPES, column_plans, finished, window_starts
from store.aggregations.spec import Aggregation
from store.batch import CREATED_TS, EVENT_TS
from store.definitions import FeatureView
from store.dtypes import TIMESTAMP, arrow_type

SEQ, ROW = "_seq", "_row"  # the offline store's stored columns (offline/names.py)


def _ns(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An integer or timestamp column as int64 (timestamps in ns)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_timestamp(col.type):
        if col.type.unit != "ns":
            col = col.cast(pa.timestamp("ns", tz=col.type.tz))
        col = col.view(pa.int64())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)


def group_ids(
    event_keys: Sequence[pa.ChunkedArray], row_keys: Sequence[pa.ChunkedArray]
) -> tuple[np.ndarray, np.ndarray]:
    """int64 ids of the entities of events and rows, equal exactly when the keys are equal (a
    single int64 key is its own id)."""
    if len(event_keys) == 1 and pa.types.is_integer(event_keys[0].type):
        return _ns(event_keys[0]), _ns(row_keys[0])
    n = len(event_keys[0])
    codes = None
    for ek, rk in zip(event_keys, row_keys, strict=True):
        both = pa.concat_arrays([ek.combine_chunks(), rk.cast(ek.type).combine_chunks()])
        enc = pc.dictionary_encode(both)
        c = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        if codes is None:
            codes = c
        else:
            codes = codes * (len(enc.dictionary) + 1) + c
            codes = np.unique(codes, return_inverse=True)[1].astype(np.int64)
    assert codes is not None
    return codes[:n], codes[n:]


def aggregate_columns(
    off: OfflineStore,
    storage: str,
    view: FeatureView,
    features: Sequence[str],
    entity_table: pa.Table,
    as_of_seq: int | None,
) -> list[pa.Array]:
    """The aggregates `features` (names of view's aggregations) of each row of `entity_table`
    (join keys of `view` cast to their types, EVENT_TS as timestamps), in row order."""
    index = {a.name: a for a in view.aggregations}
    aggs = [index[f] for f in features]
    n = entity_table.num_rows
    out: list[pa.Array | None] = [None] * len(aggs)
    t = _ns(entity_table.column(EVENT_TS))
    if n == 0:
        return [pa.array([], type=arrow_type(a.dtype)) for a in aggs]
    longest = max(a.window_ns for a in aggs)
    lo = int(window_starts(np.array([t.min()]), [longest], view.hop_ns)[0, 0])
    cols = [c for c in dict.fromkeys(a.column for a in aggs)]
    names = [*view.join_keys, EVENT_TS, CREATED_TS, SEQ, ROW, *cols]
    events = off.scan(
        storage, start=lo + 1, end=int(t.max()) + 1, columns=names, as_of_seq=as_of_seq
    ).read_all()
    gid_e, gid_r = group_ids(
        [events.column(k) for k in view.join_keys], [entity_table.column(k) for k in view.join_keys]
    )
    ts, cr = _ns(events.column(EVENT_TS)), _ns(events.column(CREATED_TS))
    sq, rw = _ns(events.column(SEQ)), _ns(events.column(ROW))
    ne = len(gid_e)
    ids, m = _dense(np.concatenate([gid_e, gid_r]))
    order, starts = S.counting_order(ids[:ne], m)
    S.sort_runs(order, starts, ts, cr, sq, rw)
    ts_s = np.ascontiguousarray(ts[order])
    # rows grouped by entity, so that each kernel reads the events in order
    ids_r = ids[ne:]
    rorder, _ = S.counting_order(ids_r, m)
    g_start = np.ascontiguousarray(starts[ids_r[rorder]])
    g_end = np.ascontiguousarray(starts[ids_r[rorder] + 1])
    t_s = np.ascontiguousarray(t[rorder])
    for plan in column_plans(aggs):
        col = events.column(plan.column).combine_chunks()
        valid = np.ones(len(col), bool) if col.null_count == 0 else _valid(col)[order]
        ordered = any(a.function in ("min", "max") for _, a, _ in plan.outputs)
        vals = np.ascontiguousarray(_sort_values(col, plan.dtype, ordered)[order])
        starts_w = window_starts(t_s, plan.windows, view.hop_ns)
        si, sf = K.sorted_stats(g_start, g_end, ts_s, vals, valid, t_s, starts_w)
        fo, io, oks = K.finish_stats(si, sf, plan.codes, plan.ks)
        take = _taker(col, plan.outputs[0][1], order)
        for (pos, agg, _), (values, ok) in zip(
            plan.outputs, finished(plan, fo, io, oks, take), strict=True
        ):
            in_rows_v, in_rows_ok = np.empty_like(values), np.empty_like(ok)
            in_rows_v[rorder], in_rows_ok[rorder] = values, ok
            out[pos] = to_arrow(in_rows_v, in_rows_ok, agg.dtype)
    return [a for a in out if a is not None]


def _valid(col: pa.Array) -> np.ndarray:
    return np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _sort_values(col: pa.Array, dtype: str, ordered: bool) -> np.ndarray:
    """The kernel's comparison values: numbers (nulls 0), strings as dense ranks (zeros when
    no min or max needs their order)."""
    if dtype == "string":
        if len(col) == 0 or not ordered:
            return np.zeros(len(col), np.int64)
        ranks = pc.rank(col, sort_keys="ascending", tiebreaker="dense")
        return np.asarray(ranks.to_numpy(zero_copy_only=False), dtype=np.int64)
    if pa.types.is_timestamp(col.type) or pa.types.is_boolean(col.type):
        col = col.cast(pa.int64())
    kind = np.float64 if dtype in ("float32", "float64") else np.int64
    if col.null_count:
        col = pc.fill_null(col, pa.scalar(0, col.type))
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=kind)


def _dense(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense ids of int64 entity ids: the offsets from the minimum when the ids are dense
    enough, else by hashing."""
    if len(keys) == 0:
        return keys.astype(np.int64), 0
    lo, hi = int(keys.min()), int(keys.max())
    if hi - lo < 4 * len(keys):
        return keys - lo, hi - lo + 1
    return S.dense_ids(keys)


def _taker(col: pa.Array, agg: Aggregation, order: np.ndarray):  # type: ignore[no-untyped-def]
    """take(idx): the values at sorted positions idx (events at order[idx] of `col`)."""
    kind = VALUE_DTYPES[agg.dtype]

    def take(idx: np.ndarray) -> np.ndarray:
        picked = col.take(pa.array(order[idx]))
        if pa.types.is_timestamp(picked.type) or pa.types.is_boolean(picked.type):
            if kind is np.bool_:
                return np.asarray(picked.to_numpy(zero_copy_only=False), dtype=bool)
            picked = picked.cast(pa.int64())
        vals = picked.to_numpy(zero_copy_only=False)
        return vals if kind is object else np.asarray(vals, dtype=kind)

    return take


def to_arrow(values: np.ndarray, valid: np.ndarray, dtype: str) -> pa.Array:
    """(values, valid) as an Arrow array of the result dtype (nulls where not valid)."""
    mask = ~valid
    if dtype == "timestamp":
        return pa.array(values.astype(np.int64), type=pa.int64(), mask=mask).cast(TIMESTAMP)
    if dtype == "string":
        return pa.array(values, type=pa.string(), mask=mask)
    return pa.array(values, type=arrow_type(dtype), mask=mask)
