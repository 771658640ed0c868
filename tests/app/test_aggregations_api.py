"""Aggregation views over HTTP: /get-online-features (Feast's shape and statuses) and
/v1/training-export read aggregate features like any other."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.app.conftest import make_client

DEFS = {
    "entities": [{"name": "user", "join_keys": ["user_id"]}],
    "feature_views": [
        {
            "name": "user_txn",
            "entities": ["user"],
            "events": [
                {"name": "amount", "dtype": "float64"},
                {"name": "merchant", "dtype": "string"},
            ],
            "aggregations": [
                {"column": "amount", "function": "sum", "windows": ["1h", "1d"]},
                {"column": "amount", "function": "count", "windows": ["1d"]},
                {"column": "merchant", "function": "last", "windows": ["1d"]},
            ],
        }
    ],
    "feature_services": [{"name": "txn_v1", "features": ["user_txn:*"]}],
}
NOW = time.time_ns()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    from store import FeatureStore

    root = tmp_path / "root"
    with FeatureStore(root) as fs:
        fs.apply(DEFS)
        ts = [NOW - 10 * 60 * 10**9, NOW - 2 * 3600 * 10**9]  # 10 min and 2 h ago
        fs.ingest("user_txn", {"user_id": [7, 7], "event_timestamp": [t / 1e9 for t in ts],
                               "amount": [5.0, 20.0], "merchant": ["acme", "bolt"]})  # fmt: skip
    return root


def test_get_online_features_serves_aggregates_with_statuses(root: Path) -> None:
    with make_client(root) as c:
        r = c.post("/get-online-features", json={"feature_service": "txn_v1",
                                                 "entities": {"user_id": [7, 8]}})  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        names = body["metadata"]["feature_names"]
        assert names == ["user_id", "amount_sum_1h", "amount_sum_1d", "amount_count_1d",
                         "merchant_last_1d"]  # fmt: skip
        res = {n: body["results"][i] for i, n in enumerate(names)}
        assert res["amount_sum_1h"]["values"] == [5.0, None]
        assert res["amount_sum_1d"]["values"] == [25.0, None]
        assert res["amount_count_1d"]["values"] == [2, 0]
        assert res["merchant_last_1d"]["values"] == ["acme", None]
        assert res["amount_count_1d"]["statuses"] == ["PRESENT", "PRESENT"]
        assert res["amount_sum_1d"]["statuses"] == ["PRESENT", "NULL_VALUE"]
        bad = c.post("/get-online-features", json={"features": ["user_txn:amount"],
                                                   "entities": {"user_id": [7]}})  # fmt: skip
        assert 400 <= bad.status_code < 500 and "amount" in bad.text


def test_training_export_serves_aggregates(root: Path) -> None:
    times = [pd.Timestamp(t, tz="UTC").isoformat() for t in (NOW, NOW - 5 * 3600 * 10**9)]
    with make_client(root) as c:
        r = c.post("/v1/training-export", json={
            "entities": {"user_id": [7, 7], "event_timestamp": times},
            "features": ["user_txn:amount_sum_1d", "user_txn:amount_count_1d"],
        })  # fmt: skip
        assert r.status_code == 200, r.text
        table = pq.read_table(r.json()["path"])
        assert table.column("amount_sum_1d").to_pylist() == [25.0, None]
        assert table.column("amount_count_1d").to_pylist() == [2, 0]
