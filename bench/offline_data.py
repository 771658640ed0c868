"""The offline benchmarks' data set: feature rows, entity rows and the FeatureStore that holds them.

Feature rows: `n` rows for `entities` int64 keys over `days` days, 8 features (2 int, 2 float,
2 string, 2 bool), 5% late events and 2% duplicate (key, event_timestamp) rows with a newer
created_timestamp. They are made in chunks of at most CHUNK rows, each covering its own slice of
the days (chunk c of k: days [c*days/k, (c+1)*days/k)), so 100M rows never sit in memory at once;
5M rows are one chunk. Entity rows: keys with ~5% unknown, times over the days (some before any
feature row), two label columns. Timestamps in microseconds (Feast holds no finer ones).
Deterministic for given sizes and seeds.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

DAY = 86_400 * 1_000_000_000
T0 = 1_767_225_600 * 1_000_000_000  # 2026-01-01 UTC
TS = pa.timestamp("ns", tz="UTC")
CHUNK = 5_000_000
FEATURES = ["f_int", "f_int2", "f_float", "f_float2", "f_str", "f_str2", "f_bool", "f_bool2"]
SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("event_timestamp", TS),
        ("created_timestamp", TS),
        ("f_int", pa.int64()),
        ("f_int2", pa.int32()),
        ("f_float", pa.float64()),
        ("f_float2", pa.float32()),
        ("f_str", pa.string()),
        ("f_str2", pa.string()),
        ("f_bool", pa.bool_()),
        ("f_bool2", pa.bool_()),
    ]
)
_DTYPES = ["int64", "int32", "float64", "float32", "string", "string", "bool", "bool"]


def definitions(ttl_days: int) -> dict:
    """FeatureStore definitions of the benchmark view `user_stats` (key user_id)."""
    return {
        "entities": [{"name": "user", "join_keys": ["user_id"], "dtype": "int64"}],
        "feature_views": [
            {
                "name": "user_stats",
                "entities": ["user"],
                "ttl": f"{ttl_days}d" if ttl_days else "0s",
                "features": [
                    {"name": n, "dtype": d} for n, d in zip(FEATURES, _DTYPES, strict=True)
                ],
            }
        ],
    }


def _strings(rng: np.random.Generator, n: int, card: int, prefix: str) -> pa.Array:
    words = pa.array([f"{prefix}{i:05d}" for i in range(card)])
    return pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, card, n)), words).cast(
        pa.string()
    )


def feature_chunks(n: int, entities: int, days: int, seed: int = 1) -> Iterator[pa.Table]:
    """The feature rows in arrival order, chunk by chunk (see the module docstring)."""
    k = max(1, -(-n // CHUNK))
    for c in range(k):
        rows = n // k + (1 if c < n % k else 0)
        lo_ns, hi_ns = c * days * DAY // k, (c + 1) * days * DAY // k
        yield _chunk(rows, entities, lo_ns, hi_ns, np.random.default_rng(seed + 1000 * c))


def make_features(n: int, entities: int, days: int, seed: int = 1) -> pa.Table:
    """All feature rows in one table (for sizes that fit in memory)."""
    return pa.concat_tables(feature_chunks(n, entities, days, seed))


def _chunk(n: int, entities: int, lo_ns: int, hi_ns: int, rng: np.random.Generator) -> pa.Table:
    n_dup = n // 50
    base = n - n_dup
    ets = np.sort(T0 + lo_ns + rng.integers(0, hi_ns - lo_ns, base))
    created = ets + rng.integers(0, 60_000_000_000, base)  # created up to a minute later
    late = rng.random(base) < 0.05
    ets[late] -= rng.integers(0, 3 * DAY, int(late.sum()))  # late: event long before arrival
    ets = np.maximum(ets, T0)
    keys = rng.integers(0, entities, base)
    dup = rng.integers(0, base, n_dup)
    keys = np.concatenate([keys, keys[dup]])
    ets = np.concatenate([ets, ets[dup]])
    created = np.concatenate([created, created[dup] + 1_000_000_000])
    ets, created = ets // 1000 * 1000, created // 1000 * 1000
    cols = {
        "user_id": pa.array(keys),
        "event_timestamp": pa.array(ets, TS),
        "created_timestamp": pa.array(created, TS),
        "f_int": pa.array(rng.integers(0, 1_000_000, n)),
        "f_int2": pa.array(rng.integers(0, 100, n).astype(np.int32)),
        "f_float": pa.array(rng.random(n)),
        "f_float2": pa.array(rng.random(n).astype(np.float32)),
        "f_str": _strings(rng, n, 1000, "city-"),
        "f_str2": _strings(rng, n, 50, "segment-"),
        "f_bool": pa.array(rng.random(n) < 0.5),
        "f_bool2": pa.array(rng.random(n) < 0.1),
    }
    return pa.table(cols, schema=SCHEMA)


def make_entities(n: int, entities: int, days: int, seed: int = 2) -> pa.Table:
    """Entity rows with labels: ~5% unknown keys, some before any feature row."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, int(entities * 1.05), n)
    ts = T0 + rng.integers(-DAY, days * DAY, n)
    ts = ts // 1000 * 1000  # microseconds, as Feast's entity_df
    return pa.table(
        {
            "user_id": pa.array(keys),
            "event_timestamp": pa.array(ts, TS),
            "label": pa.array(rng.random(n) < 0.3),
            "weight": pa.array(rng.random(n)),
        }
    )
