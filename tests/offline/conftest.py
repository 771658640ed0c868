"""Fixtures of the offline tests: random multi-view data sets and a brute-force join oracle."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from offline import FeatureQuery, OfflineOptions

TS = pa.timestamp("ns", tz="UTC")
HOUR = 3_600 * 1_000_000_000
DAY = 24 * HOUR
T0 = 1_700_000_000 * 1_000_000_000 // DAY * DAY  # a UTC midnight

VIEWS = {
    "users": (
        ["user_id"],
        [
            ("user_id", pa.int64()),
            ("event_timestamp", TS),
            ("created_timestamp", TS),
            ("age", pa.int64()),
            ("score", pa.float64()),
            ("city", pa.string()),
            ("active", pa.bool_()),
        ],
    ),
    "items": (
        ["item_id"],
        [
            ("item_id", pa.string()),
            ("event_timestamp", TS),
            ("created_timestamp", TS),
            ("price", pa.float32()),
            ("seen", TS),
            ("n", pa.int32()),
        ],
    ),
    "pairs": (
        ["user_id", "item_id"],
        [
            ("user_id", pa.int64()),
            ("item_id", pa.string()),
            ("event_timestamp", TS),
            ("created_timestamp", TS),
            ("clicks", pa.int64()),
            ("emb", pa.list_(pa.float32(), 3)),
        ],
    ),
}


def schema_of(view: str) -> pa.Schema:
    return pa.schema(VIEWS[view][1])


def options(**kw: object) -> OfflineOptions:
    base: dict[str, object] = {"background": False, "buffer_rows": 10**9, "fsync": False}
    base.update(kw)
    return OfflineOptions(**base)  # type: ignore[arg-type]


def _key_values(rng: np.random.Generator, key: str, n: int) -> list:
    if key == "user_id":
        return [int(v) for v in rng.integers(-3, 9, n)]  # negative keys too
    return [f"it'em-{v}" for v in rng.integers(0, 8, n)]


def _feature_values(rng: np.random.Generator, name: str, typ: pa.DataType, n: int) -> list:
    nulls = rng.random(n) < 0.15
    if typ == TS:
        vals = [int(T0 + v * HOUR) for v in rng.integers(0, 100, n)]
    elif pa.types.is_fixed_size_list(typ):
        vals = [[float(x) for x in rng.integers(0, 9, 3)] for _ in range(n)]
    elif typ == pa.string():
        vals = [f"{name}-{v}" for v in rng.integers(0, 50, n)]
    elif typ == pa.bool_():
        vals = [bool(v) for v in rng.integers(0, 2, n)]
    elif pa.types.is_floating(typ):
        vals = [float(v) / 4 for v in rng.integers(0, 400, n)]
    else:
        vals = [int(v) for v in rng.integers(-1000, 1000, n)]
    return [None if z else v for v, z in zip(vals, nulls, strict=True)]


def random_batch(rng: np.random.Generator, view: str, n: int) -> pa.Table:
    """Rows over 4 days with hour-granular times, so event_timestamp ties are common."""
    keys, fields = VIEWS[view]
    cols: dict[str, list] = {}
    for name, typ in fields:
        if name in keys:
            cols[name] = _key_values(rng, name, n)
        elif name == "event_timestamp":
            cols[name] = [int(T0 + v * HOUR) for v in rng.integers(0, 4 * 24, n)]
        elif name == "created_timestamp":
            cols[name] = [int(T0 + v * HOUR) for v in rng.integers(0, 3, n)]
        else:
            cols[name] = _feature_values(rng, name, typ, n)
    return pa.table({name: pa.array(cols[name], typ) for name, typ in fields})


def random_entities(rng: np.random.Generator, n: int, feature_ts: list[int]) -> pa.Table:
    """Known and unknown keys; times before any row, on exact row times and ttl boundaries."""
    choices = np.array(
        feature_ts
        + [t + HOUR for t in feature_ts]
        + [t + 6 * HOUR for t in feature_ts]
        + [t - 1 for t in feature_ts]
        + [T0 - DAY, T0 + 9 * DAY]
    )
    ts = rng.choice(choices, n)
    user = [int(v) for v in rng.integers(-4, 11, n)]
    item = [f"it'em-{v}" for v in rng.integers(0, 10, n)]
    return pa.table(
        {
            "label": pa.array(rng.integers(0, 2, n), pa.int8()),
            "user_id": pa.array(user, pa.int64()),
            "event_timestamp": pa.array(ts, pa.timestamp("ns")),  # naive: UTC
            "item_id": pa.array(item, pa.string()),
            "weight": pa.array(rng.random(n)),
        }
    )


def oracle(
    rows: dict[str, list[dict]],
    entities: pa.Table,
    queries: list[FeatureQuery],
    as_of_seq: int | None,
    full_feature_names: bool = False,
) -> dict[str, list]:
    """Brute force: for each entity row and query, scan every row of the view."""
    ents = entities.to_pylist()
    ts = entities.column("event_timestamp")
    ets = ts.cast(pa.timestamp("ns", tz=ts.type.tz)).cast(pa.int64()).to_pylist()
    out = to_comparable(entities)
    for q in queries:
        for f in q.features:
            out[f"{q.view}__{f}" if full_feature_names else f] = []
        for ent, t in zip(ents, ets, strict=True):
            best = None
            for r in rows[q.view]:
                if as_of_seq is not None and r["_seq"] > as_of_seq:
                    continue
                if any(r[k] != ent[k] for k in q.keys):
                    continue
                if r["event_timestamp"] > t or (q.ttl_ns and r["event_timestamp"] < t - q.ttl_ns):
                    continue
                version = (r["event_timestamp"], r["created_timestamp"], r["_seq"], r["_row"])
                if best is None or version > best[0]:
                    best = (version, r)
            for f in q.features:
                name = f"{q.view}__{f}" if full_feature_names else f
                out[name].append(None if best is None else best[1][f])
    return out


def as_rows(table: pa.Table, seq: int) -> list[dict]:
    """Rows of an appended batch as the oracle sees them (timestamps as int ns)."""
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        cols[name] = col.to_pylist()
    return [
        {**{c: cols[c][i] for c in cols}, "_seq": seq, "_row": i} for i in range(table.num_rows)
    ]


def to_comparable(table: pa.Table) -> dict[str, list]:
    out = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        out[name] = col.to_pylist()
    return out
