"""A store whose offline history has what a reader of published snapshots must cope with, and
the readers themselves, written exactly as README's "Reading the offline store from other
engines" shows them.

`build_store` ingests deterministic batches into a ttl view (`user_stats`, int64 key, a vector
feature, a feature added by a later apply, so older files lack it) and a ttl-0 view (`pair`,
two keys, one a string), flushes between batches, compacts (so files hold several seqs) and
ingests again. Shared by tests/store/test_offline_files.py and tests/spark/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from offline import OfflineOptions
from offline.snapshot_files import listing_schema
from online import TreeOptions
from store import FeatureStore
from tests.definitions import definitions, view

HOUR = 3600 * 10**9
T0 = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
TS = pa.timestamp("ns", tz="UTC")
USER_FEATURES = {"ctr": "float32", "country": "string", "emb": "float32[4]"}
PAIR_FEATURES = {"score": "float64", "clicks": "int64"}


def defs(with_added_feature: bool) -> dict[str, Any]:
    users = dict(USER_FEATURES, **({"visits": "int64"} if with_added_feature else {}))
    return definitions(
        view("user_stats", ["user"], users, ttl="6h"),
        view("pair", ["user", "item"], PAIR_FEATURES),
    )


def user_batch(rng: np.random.Generator, n: int, day: int, visits: bool) -> pa.Table:
    ts = T0 + day * 24 * HOUR + rng.integers(0, 30, n) * HOUR  # spills into the next date
    cols: dict[str, Any] = {
        "user_id": pa.array(rng.integers(0, 40, n), pa.int64()),
        "event_timestamp": pa.array(ts, TS),
        "ctr": pa.array(rng.random(n).astype(np.float32)),
        "country": pa.array([f"c{int(c)}" if c else None for c in rng.integers(0, 5, n)]),
        "emb": pa.array(list(rng.random((n, 4)).astype(np.float32)), pa.list_(pa.float32(), 4)),
    }
    if visits:
        cols["visits"] = pa.array(rng.integers(0, 100, n), pa.int64())
    return pa.table(cols)


def pair_batch(rng: np.random.Generator, n: int, day: int) -> pa.Table:
    ts = T0 + day * 24 * HOUR + rng.integers(0, 24, n) * HOUR
    return pa.table(
        {
            "user_id": pa.array(rng.integers(0, 10, n), pa.int64()),
            "item_id": pa.array([f"i{int(i)}" for i in rng.integers(0, 6, n)]),
            "event_timestamp": pa.array(ts, TS),
            "score": pa.array(rng.random(n)),
            "clicks": pa.array(rng.integers(0, 9, n), pa.int64()),
        }
    )


def open_store(root: Path, grace_s: float = 3600) -> FeatureStore:
    return FeatureStore(
        root,
        tree_options=TreeOptions(background=False, t_wait_s=0.0),
        offline_options=OfflineOptions(background=False, snapshot_grace_s=grace_s),
    )


def build_store(root: Path, seed: int = 7, rows: int = 300) -> tuple[FeatureStore, list[int]]:
    """The store described in the module docstring and the seqs of its batches, in order."""
    rng = np.random.default_rng(seed)
    fs = open_store(root)
    fs.apply(defs(with_added_feature=False))
    seqs = []
    for day in range(3):
        seqs.append(fs.ingest("user_stats", user_batch(rng, rows, day, visits=False)))
        seqs.append(fs.ingest("pair", pair_batch(rng, rows // 3, day)))
        fs.flush()
    fs.apply(defs(with_added_feature=True))
    for day in range(2, 5):
        seqs.append(fs.ingest("user_stats", user_batch(rng, rows, day, visits=True)))
        seqs.append(fs.ingest("pair", pair_batch(rng, rows // 3, day)))
        fs.flush()
    fs.compact()  # merged files hold rows of several seqs
    seqs.append(fs.ingest("user_stats", user_batch(rng, rows, 4, visits=True)))
    return fs, seqs


def entity_rows(seed: int = 11, n: int = 400) -> pa.Table:
    """Entity rows over the data's time range (and a little before and after), some unknown."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "user_id": pa.array(rng.integers(0, 45, n), pa.int64()),
            "item_id": pa.array([f"i{int(i)}" for i in rng.integers(0, 7, n)]),
            "event_timestamp": pa.array(T0 + rng.integers(-6, 6 * 24, n) * HOUR, TS),
        }
    )


# ---------------------------------------------------------------- the readers (README snippets)


def read_pyarrow(listing: dict) -> pa.Table:
    import pyarrow.dataset as ds

    paths = [f["path"] for f in listing["files"]]
    schema = listing_schema(listing)  # older files lack later features: they read as nulls
    dataset = ds.dataset(paths, schema=schema, format="parquet")
    return dataset.to_table(filter=ds.field("_seq") <= listing["as_of_seq"])


def read_polars(listing: dict) -> pa.Table:
    import polars as pl

    paths = [f["path"] for f in listing["files"]]
    schema = pl.from_arrow(listing_schema(listing).empty_table()).schema
    frame = (
        pl.scan_parquet(paths, schema=schema, missing_columns="insert", hive_partitioning=False)
        .filter(pl.col("_seq") <= listing["as_of_seq"])
        .collect()
    )
    return frame.to_arrow()


def read_ray(listing: dict) -> pa.Table:
    import ray
    from ray.data.expressions import col

    paths = [f["path"] for f in listing["files"]]
    dataset = ray.data.read_parquet(
        paths, schema=listing_schema(listing), partitioning=None
    ).filter(expr=col("_seq") <= listing["as_of_seq"])
    return pa.concat_tables(ray.get(dataset.to_arrow_refs()))


def read_duckdb(listing: dict) -> pa.Table:
    """The reference: DuckDB's scan of the listed files with the listing's row filter."""
    return (
        duckdb.connect()
        .sql(
            "SELECT * FROM read_parquet($files, union_by_name = true, hive_partitioning = false) "
            "WHERE _seq <= $n",
            params={"files": [f["path"] for f in listing["files"]], "n": listing["as_of_seq"]},
        )
        .to_arrow_table()
    )


def canonical(table: pa.Table, listing: dict) -> pa.Table:
    """`table` in the listing's column order and types, sorted by (_seq, _row): readers differ
    in string and list flavours and row order, never in values."""
    schema = listing_schema(listing)
    table = table.select(schema.names)
    cols = [table.column(i).cast(f.type) for i, f in enumerate(schema)]
    out = pa.Table.from_arrays(cols, schema=schema)
    return out.sort_by([("_seq", "ascending"), ("_row", "ascending")])
