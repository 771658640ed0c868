"""Child process of the aggregation crash test: ingest deterministic event batches into
aggregation views, print each acknowledged batch; killed with SIGKILL by the test.

Usage: python -m tests.store._agg_crash_child ROOT ROUND
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from offline import OfflineOptions
from online import TreeOptions
from store import FeatureStore

T0 = 1_767_225_600 * 10**9  # 2026-01-01
MIN = 60 * 10**9
USERS = 20
DEFS = {
    "entities": [
        {"name": "user", "join_keys": ["user_id"]},
        {"name": "shop", "join_keys": ["shop"], "dtype": "string"},
    ],
    "feature_views": [
        {
            "name": "spend",
            "entities": ["user"],
            "events": [{"name": "amount", "dtype": "float64"}, {"name": "tag", "dtype": "string"}],
            "aggregations": [
                {"column": "amount", "function": "sum", "windows": ["1h", "7d"]},
                {"column": "amount", "function": "count", "windows": ["1d"]},
                {"column": "amount", "function": "max", "windows": ["1d"]},
                {"column": "tag", "function": "last", "windows": ["7d"]},
            ],
        },
        {
            "name": "spend_shop",
            "entities": ["user", "shop"],
            "events": [{"name": "amount", "dtype": "float64"}, {"name": "tag", "dtype": "string"}],
            "aggregations": [{"column": "amount", "function": "sum", "windows": ["1d"]}],
        },
    ],
}


def batch(rnd: int, i: int) -> tuple[str, dict]:
    """Batch i of round rnd: one event per user; every 5th batch is late (an hour back)."""
    view = "spend" if i % 3 else "spend_shop"
    t = T0 + (rnd * 2000 + i) * MIN - (60 * MIN if i % 5 == 4 else 0)
    data = {
        "user_id": list(range(USERS)),
        "event_timestamp": pd.to_datetime(np.full(USERS, t), utc=True),
        "amount": [float(rnd * 1000 + i + u / 100) for u in range(USERS)],
        "tag": [f"r{rnd}b{i}"] * USERS,
    }
    if view == "spend_shop":
        data["shop"] = [f"s{u % 3}" for u in range(USERS)]
    return view, data


def main() -> None:
    root, rnd = sys.argv[1], int(sys.argv[2])
    fs = FeatureStore(
        root,
        tree_options=TreeOptions(memtable_bytes=24 << 10, t_wait_s=0.0),
        offline_options=OfflineOptions(buffer_rows=300, buffer_age_s=0.1),
        segment_bytes=48 << 10,
    )
    fs.apply(DEFS)
    print("READY", flush=True)
    for i in range(10**9):
        view, data = batch(rnd, i)
        seq = fs.ingest(view, data)
        print(f"ACK {seq} {i}", flush=True)


if __name__ == "__main__":
    main()
