"""Retention and freshness through the FeatureStore: definitions (parse, round trip, apply),
retention drops on compact with the audit still at 0, exports that count rows outside retention,
and per-view freshness (stats, staleness in real time, survival across a restart).
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from store import FeatureStore
from store.definitions import Definitions
from store.errors import DefinitionError
from store.freshness import LAG_BUCKETS_S, Freshness
from store.retention import OUTSIDE_METADATA
from tests.definitions import definitions, view
from tests.store.conftest import HOUR, open_store, user_batch

DAY = 24 * HOUR


def defs(retention: str | None = "3d", freshness: str | None = None, ttl: str = "0") -> dict:
    v = view("user_stats", ["user"], {"ctr": "float32", "country": "string", "emb": "float32[4]"})
    v["ttl"] = ttl
    if retention is not None:
        v["retention"] = retention
    if freshness is not None:
        v["freshness"] = freshness
    return definitions(v, view("item_stats", ["item"], {"price": "float64"}))


@pytest.fixture
def store(tmp_path):
    fs = open_store(tmp_path / "root")
    fs.apply(defs())
    yield fs
    fs.close()


def test_definitions_parse_round_trip_and_name_view_and_field() -> None:
    d = Definitions.from_dict(defs("400d", "2h"))
    v = d.feature_views["user_stats"]
    assert (v.retention_ns, v.freshness_ns) == (400 * DAY, 2 * HOUR)
    assert d.to_dict()["feature_views"][0]["retention"] == "400d"
    assert d.to_dict()["feature_views"][0]["freshness"] == "2h"
    assert Definitions.from_dict(d.to_dict()) == d
    plain = Definitions.from_dict(defs(None)).to_dict()["feature_views"][0]
    assert "retention" not in plain and "freshness" not in plain
    for field, bad in (("retention", "-1d"), ("freshness", "soon"), ("retention", True)):
        raw = defs()
        raw["feature_views"][0][field] = bad
        with pytest.raises(DefinitionError, match=f"feature view 'user_stats' {field}"):
            Definitions.from_dict(raw)


def test_changing_retention_or_freshness_is_compatible(store: FeatureStore) -> None:
    store.ingest("user_stats", user_batch([1], time.time_ns()))
    changes = store.apply(defs("10d", "1h"))
    assert changes["dropped_data"] == [] and changes["feature_views"]["modified"] == ["user_stats"]
    detail = " ".join(changes["details"]["user_stats"])
    assert (
        "retention changes from 3d to 10d" in detail and "freshness changes from 0 to 1h" in detail
    )
    assert store.feature_view("user_stats")["retention"] == "10d"
    assert store.get_online_features(["user_stats:ctr"], {"user_id": [1]}).to_dict()["ctr"] != [
        None
    ]


def test_compact_drops_expired_history_and_exports_count_rows_outside(store, tmp_path) -> None:
    now = time.time_ns()
    for age in range(10):  # one row per day for entity 1, entity 2 only 9 days ago
        store.ingest("user_stats", user_batch([1], now - age * DAY, ctr=[float(age)]))
    store.ingest("user_stats", user_batch([2], now - 9 * DAY))
    store.flush()
    before = store.stats()["offline"]["user_stats"]["partitions"]
    store.compact()
    after = store.stats()["offline"]["user_stats"]
    assert before >= 10 and after["partitions"] <= 4
    # the online store keeps entity 2 (ttl governs online); the audit compares retained rows
    got = store.get_online_features(["user_stats:ctr"], {"user_id": [1, 2]}).to_dict()
    assert got["ctr"][0] == 0.0 and got["ctr"][1] is not None
    assert all(r["mismatches"] == 0 for r in store.audit().values())
    ents = pa.table(
        {
            "user_id": pa.array([1, 1, 1], pa.int64()),
            "event_timestamp": pa.array(
                [now - 8 * DAY, now - 5 * DAY, now], pa.timestamp("ns", "UTC")
            ),
        }
    )
    out = store.export_training(ents, ["user_stats:ctr"], tmp_path / "out.parquet")
    assert out["outside_retention"] == {"user_stats": 2} and out["rows"] == 3
    assert pq.read_table(out["path"]).column("ctr").to_pylist() == [None, None, 0.0]
    hist = store.get_historical_features(ents, ["user_stats:ctr"])
    assert hist.column("ctr").to_pylist() == [None, None, 0.0]
    assert hist.schema.metadata[OUTSIDE_METADATA] == b'{"user_stats": 2}'
    # views without retention leave the answer as it was
    plain = store.export_training(
        pa.table({"item_id": ["a"], "event_timestamp": pa.array([now], pa.timestamp("ns", "UTC"))}),
        ["item_stats:price"],
        tmp_path / "plain.parquet",
    )
    assert set(plain) == {"seq", "rows", "path"}


def test_retention_survives_reopen_and_the_audit_stays_clean(tmp_path) -> None:
    root = tmp_path / "root"
    fs = open_store(root)
    fs.apply(defs("2d"))
    now = time.time_ns()
    fs.ingest("user_stats", user_batch([1, 2, 3], now - 5 * DAY))
    fs.ingest("user_stats", user_batch([3, 4], now))
    fs.flush()
    fs.compact()
    assert fs.stats()["offline"]["user_stats"]["partitions"] == 1
    fs.close()
    fs = open_store(root)
    assert all(r["mismatches"] == 0 for r in fs.audit().values())
    fs.apply(defs(None))  # retention removed: nothing comes back, the audit still agrees
    assert all(r["mismatches"] == 0 for r in fs.audit().values())
    fs.close()


def test_stats_report_freshness_per_view(store: FeatureStore) -> None:
    now = time.time_ns()
    store.ingest("user_stats", user_batch([1, 2, 3], [now - 10 * 10**9, now - 2 * HOUR, now]))
    s = store.stats()["freshness"]["user_stats"]
    assert s["newest_event_ns"] == now and s["newest_ingest_ns"] >= now
    assert s["newest_event_time"].endswith("Z") and s["rows"] == 3 and s["entities"] == 3
    lag = s["ingest_lag_seconds"]
    assert lag["count"] == 3 and lag["buckets"][-1] == ["+Inf", 3]
    assert [b for b, _ in lag["buckets"][:-1]] == list(LAG_BUCKETS_S)
    counts = dict((b, c) for b, c in lag["buckets"][:-1])
    assert counts[0.1] <= 1 and counts[15.0] == 2 and counts[4 * 3600.0] == 3
    assert 2 * 3600 < lag["sum"] < 2 * 3600 + 60
    assert s["bytes_online"] > 0 and s["retention"] == "3d" and "fresh" not in s
    empty = store.stats()["freshness"]["item_stats"]
    assert empty["newest_event_time"] is None and empty["rows"] == 0


def test_a_view_that_stops_receiving_data_turns_stale(tmp_path) -> None:
    fs = open_store(tmp_path / "root")
    fs.apply(defs(freshness="1s"))
    fs.ingest("user_stats", user_batch([1], time.time_ns()))
    assert fs.stale_views() == [] and fs.stats()["freshness"]["user_stats"]["fresh"] is True
    deadline = time.monotonic() + 10
    while fs.stale_views() != ["user_stats"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fs.stale_views() == ["user_stats"]
    assert fs.stats()["freshness"]["user_stats"]["fresh"] is False
    fs.ingest("user_stats", user_batch([2], time.time_ns()))
    assert fs.stale_views() == []
    fs.close()
    fs = open_store(tmp_path / "root")  # the newest ingest time survives the restart
    assert fs.stats()["freshness"]["user_stats"]["newest_ingest_ns"] is not None
    time.sleep(1.1)
    assert fs.stale_views() == ["user_stats"]
    fs.close()


def test_freshness_with_an_injected_clock(tmp_path) -> None:
    clock = [10**18]
    f = Freshness(tmp_path, clock=lambda: clock[0])
    d = Definitions.from_dict(defs(freshness="1h"))
    f.track(d)
    assert f.stale(d) == []
    clock[0] += HOUR + 1
    assert f.stale(d) == ["user_stats"]  # never received data: stale after its objective
    f.observe("user_stats", np.array([clock[0] - 5 * 10**9], np.int64))
    assert f.stale(d) == []
    f.save()
    clock[0] += 2 * HOUR
    assert Freshness(tmp_path, clock=lambda: clock[0]).stale(d) == ["user_stats"]
