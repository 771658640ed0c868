"""Feast's side of the training-export comparison: run by bench/offline_export.py in .venv-feast.

Feast 0.67 with its DuckDB offline store (the `feast[duckdb]` extra), a FileSource over one
Parquet file holding the same feature rows rickhouse holds, the same feature view (int64 join key
`user_id`, 8 features, the same ttl), and `get_historical_features(entity_df, features).to_df()`
for the same entity rows. A warm-up run, then the median of `--repeat` runs; the last result is
written to `--out` with the entity rows' input position (`__row`) so the parent can compare it with
rickhouse's export row for row. Prints one JSON line: seconds, runs, rows, maxrss_mb.

This file imports Feast, which is not installed in rickhouse's own environment: it only runs as
`.venv-feast/bin/python bench/feast_export.py ...`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.types import Bool, Float32, Float64, Int32, Int64, String
from feast.value_type import ValueType

FEATURES = {
    "f_int": Int64,
    "f_int2": Int32,
    "f_float": Float64,
    "f_float2": Float32,
    "f_str": String,
    "f_str2": String,
    "f_bool": Bool,
    "f_bool2": Bool,
}


def build_store(repo: Path, features_path: str, ttl_days: int) -> FeatureStore:
    config = RepoConfig(
        project="bench",
        registry=str(repo / "registry.db"),
        provider="local",
        offline_store={"type": "duckdb"},
        online_store={"type": "sqlite", "path": str(repo / "online.db")},
        entity_key_serialization_version=3,
    )
    fs = FeatureStore(config=config)
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    source = FileSource(
        path=features_path,
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    )
    view = FeatureView(
        name="user_stats",
        entities=[user],
        ttl=timedelta(days=ttl_days),
        schema=[Field(name=n, dtype=t) for n, t in FEATURES.items()],
        source=source,
    )
    fs.apply([user, view])
    return fs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--features-parquet", required=True, help="one Parquet file of feature rows")
    p.add_argument("--entities", required=True, help="Parquet file of entity rows")
    p.add_argument("--ttl-days", type=int, default=7)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", required=True, help="where to write the last result")
    args = p.parse_args()
    repo = Path(tempfile.mkdtemp(prefix="feast-bench-"))
    fs = build_store(repo, args.features_parquet, args.ttl_days)
    entity_df = pq.read_table(args.entities).to_pandas()
    entity_df["__row"] = range(len(entity_df))
    refs = [f"user_stats:{n}" for n in FEATURES]

    def run() -> pd.DataFrame:
        return fs.get_historical_features(entity_df=entity_df, features=refs).to_df()

    run()  # warm-up
    times, cpus, out = [], [], None
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        out = run()
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    assert out is not None
    out.sort_values("__row").to_parquet(args.out, index=False)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": statistics.median(times),
                "cpu_seconds": statistics.median(cpus),  # process CPU, every thread
                "runs": times,
                "rows": len(out),
                "maxrss_mb": maxrss,
            }
        )
    )


if __name__ == "__main__":
    main()
