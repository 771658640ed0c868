"""rickhouse's point-in-time join in Spark 4.3 over a published snapshot: the code README's
"Reading the offline store from other engines" shows for Spark, tested by test_spark_asof.py.

A view's listed files are read as they are (timestamps as bigint nanoseconds, schemas merged,
rows filtered to `_seq <= as_of_seq`); each entity row then takes, per view, the latest feature
row of its key whose version struct (event_timestamp, created_timestamp, _seq, _row) is at or
below `(entity_ts, MAX, MAX, MAX)`, i.e. the latest row with event_timestamp <= entity_ts, ties
broken by the version order; a match older than `entity_ts - ttl` (ttl > 0) gives nulls.
"""

from __future__ import annotations

from typing import Any

INT64_MAX = 9_223_372_036_854_775_807
INT32_MAX = 2_147_483_647


def spark_session() -> Any:
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[1]")
        .appName("rickhouse-asof")
        .config("spark.sql.legacy.parquet.nanosAsLong", "true")  # ns timestamps as bigint
        .config("spark.sql.join.asofJoin.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )


def read_view(spark: Any, listing: dict) -> Any:
    """The snapshot's rows: the listed files (never a glob), schemas merged, `_seq` filtered."""
    paths = [f["path"] for f in listing["files"]]
    return (
        spark.read.option("mergeSchema", "true")
        .parquet(*paths)
        .where(f"_seq <= {int(listing['as_of_seq'])}")
    )


def asof_join(spark: Any, entities: Any, listings: list[dict]) -> Any:
    """Entity rows (`event_timestamp` as bigint ns, plus each view's keys) joined with the
    features of each listed view; feature columns named as in the listing."""
    entities.createOrReplaceTempView("entities")
    select, joins = ["e.*"], []
    for i, listing in enumerate(listings):
        read_view(spark, listing).createOrReplaceTempView(f"view{i}")
        v = f"v{i}"
        keys = " AND ".join(f"e.{k} = {v}.{k}" for k in listing["keys"])
        joins.append(
            f"LEFT ASOF JOIN (SELECT *, named_struct('t', event_timestamp, "
            f"'c', created_timestamp, 's', _seq, 'r', _row) AS version FROM view{i}) AS {v} "
            f"MATCH_CONDITION (named_struct('t', e.event_timestamp, 'c', {INT64_MAX}L, "
            f"'s', {INT64_MAX}L, 'r', {INT32_MAX}) >= {v}.version) ON {keys}"
        )
        ttl_ns = int(listing["ttl_s"] * 1e9)
        fresh = f"{v}.version.t >= e.event_timestamp - {ttl_ns}" if ttl_ns > 0 else "TRUE"
        for feature in listing["features"]:
            select.append(f"CASE WHEN {fresh} THEN {v}.{feature} END AS {feature}")
    return spark.sql(f"SELECT {', '.join(select)} FROM entities AS e {' '.join(joins)}")
