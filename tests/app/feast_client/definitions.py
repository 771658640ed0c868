"""Feast definitions mirroring rickhouse's `user_stats` view (tests/app/conftest.py DEFS).

Imported only by client.py, under the Feast venv's python: rickhouse's own venv has no Feast.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Bool, Float32, Int64, String, UnixTimestamp


def objects(repo: Path) -> list[object]:
    """The entity, the view and its push source, as rickhouse defines them (ttl 0: no expiry)."""
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    batch = FileSource(
        name="user_stats_batch",
        path=str(repo / "user_stats.parquet"),  # never read: rickhouse holds the data
        timestamp_field="event_timestamp",
    )
    push = PushSource(name="user_stats_push", batch_source=batch)
    view = FeatureView(
        name="user_stats",
        entities=[user],
        ttl=timedelta(0),
        schema=[
            Field(name="user_id", dtype=Int64),
            Field(name="ctr", dtype=Float32),
            Field(name="country", dtype=String),
            Field(name="visits", dtype=Int64),
            Field(name="premium", dtype=Bool),
            Field(name="emb", dtype=Array(Float32)),
            Field(name="seen", dtype=UnixTimestamp),
        ],
        source=push,
        online=True,
    )
    return [user, batch, push, view]
