"""Freshness over HTTP: /health lists stale views (200 either way; HEAD has no body), /v1/stats
and /metrics report each view's freshness, /v1/feature-views shows retention and freshness, and
/v1/training-export counts the entity rows outside retention."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.app.conftest import make_client
from tests.definitions import definitions, view

DEFS = definitions(
    {
        **view("clicks", ["user"], {"n": "int64"}, ttl=0),
        "retention": "30d",
        "freshness": "1s",
    },
    view("quiet", ["user"], {"x": "float64"}, ttl=0),
)


def now_iso(offset_s: float = 0.0) -> str:
    t = time.time() + offset_s
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "Z"


def test_health_lists_a_view_that_stops_receiving_data(tmp_path: Path) -> None:
    with make_client(tmp_path / "root") as c:
        assert c.put("/v1/definitions", json=DEFS).status_code == 200
        r = c.post(
            "/v1/ingest/clicks", json={"user_id": [1], "event_timestamp": [now_iso()], "n": [1]}
        )
        assert r.status_code == 200, r.text
        assert c.get("/health").json() == {"stale": []}
        deadline = time.monotonic() + 10
        while c.get("/health").json()["stale"] != ["clicks"] and time.monotonic() < deadline:
            time.sleep(0.1)
        r = c.get("/health")
        assert r.status_code == 200 and r.json() == {"stale": ["clicks"]}
        head = c.head("/health")
        assert head.status_code == 200 and head.content == b""
        stats = c.get("/v1/stats").json()["freshness"]
        assert stats["clicks"]["fresh"] is False and stats["clicks"]["freshness"] == "1s"
        assert "fresh" not in stats["quiet"]  # no objective: never stale
        views = {v["name"]: v for v in c.get("/v1/feature-views").json()}
        assert views["clicks"]["retention"] == "30d" and views["clicks"]["freshness"] == "1s"
        metrics = c.get("/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(metrics)}
        fresh = {s.labels["view"]: s.value for s in families["rickhouse_view_fresh"].samples}
        assert fresh == {"clicks": 0.0}
        lag = [
            s
            for s in families["rickhouse_ingest_lag_seconds"].samples
            if s.labels["view"] == "clicks"
        ]
        assert any(s.name.endswith("_count") and s.value == 1 for s in lag)
        newest = families["rickhouse_view_newest_event_timestamp_seconds"].samples
        assert abs(next(s.value for s in newest if s.labels["view"] == "clicks") - time.time()) < 60
        r = c.post(
            "/v1/ingest/clicks", json={"user_id": [2], "event_timestamp": [now_iso()], "n": [2]}
        )
        assert c.get("/health").json() == {"stale": []}


def test_training_export_counts_rows_outside_retention(tmp_path: Path) -> None:
    with make_client(tmp_path / "root") as c:
        assert c.put("/v1/definitions", json=DEFS).status_code == 200
        old, new = now_iso(-40 * 86400), now_iso(-60)
        body = {"user_id": [1, 1], "event_timestamp": [old, new], "n": [1, 2]}
        assert c.post("/v1/ingest/clicks", json=body).status_code == 200
        r = c.post(
            "/v1/training-export",
            json={
                "entities": {
                    "user_id": [1, 1],
                    "event_timestamp": [now_iso(-35 * 86400), now_iso()],
                },
                "features": ["clicks:n"],
            },
        )
        assert r.status_code == 200, r.text
        info = r.json()
        assert info["outside_retention"] == {"clicks": 1} and info["rows"] == 2
