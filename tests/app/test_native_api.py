"""Native /v1 endpoints: ingest (JSON, Arrow IPC), training export (file, Parquet, Arrow;
entities as JSON, Arrow or a Parquet path), definitions, views, stats, audit, metrics, OpenAPI."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from fastapi.testclient import TestClient

from tests.app.conftest import DEFS, arrow_ipc, last_seq, make_client, make_root

ARROW = "application/vnd.apache.arrow.stream"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("native"))


@pytest.fixture(scope="module")
def client(root: Path):  # noqa: ANN201
    with make_client(root) as c:
        yield c


def visits(client: TestClient, users: list[int]) -> list:
    r = client.post(
        "/get-online-features",
        json={"entities": {"user_id": users}, "features": ["user_stats:visits"]},
    )
    assert r.status_code == 200, r.text
    return r.json()["results"][1]["values"]


def user_rows(users: list[int], visits_: list[int], ts: str) -> dict:
    n = len(users)
    return {
        "user_id": users,
        "event_timestamp": [ts] * n,
        "ctr": [0.5] * n,
        "country": ["DE"] * n,
        "visits": visits_,
        "premium": [False] * n,
        "emb": [[1.0, 1.0, 1.0]] * n,
        "seen": [ts] * n,
    }


def test_ingest_json_columns_and_records(client: TestClient) -> None:
    seq0 = last_seq(client)
    r = client.post(
        "/v1/ingest/user_stats", json=user_rows([501, 502], [1, 2], "2025-01-31T00:00:00Z")
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"seq": seq0 + 1, "rows": 2}
    cols = user_rows([503], [3], "2025-01-31T00:00:00Z")
    records = [{k: v[0] for k, v in cols.items()}]
    r = client.post("/v1/ingest/user_stats", json=records)
    assert r.status_code == 200 and r.json() == {"seq": seq0 + 2, "rows": 1}
    assert visits(client, [501, 502, 503]) == [1, 2, 3]


def test_ingest_arrow_ipc_stream(client: TestClient) -> None:
    seq0 = last_seq(client)
    n = 1000
    table = pa.table(
        {
            "user_id": pa.array(range(10_000, 10_000 + n), pa.int64()),
            "event_timestamp": pa.array([1_738_000_000_000_000_000] * n, pa.int64()).cast(
                pa.timestamp("ns", tz="UTC")
            ),
            "ctr": pa.array([0.125] * n, pa.float32()),
            "country": pa.array(["JP"] * n),
            "visits": pa.array(range(n), pa.int64()),
            "premium": pa.array([True] * n),
            "emb": pa.FixedSizeListArray.from_arrays(pa.array([0.0] * 3 * n, pa.float32()), 3),
            "seen": pa.array([None] * n, pa.timestamp("ns", tz="UTC")),
        }
    )
    r = client.post(
        "/v1/ingest/user_stats", content=arrow_ipc(table), headers={"Content-Type": ARROW}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"seq": seq0 + 1, "rows": n}
    assert visits(client, [10_000, 10_000 + n - 1]) == [0, n - 1]


def _entities() -> dict:
    return {
        "user_id": [1, 2, 1],
        "event_timestamp": ["2025-01-30T12:00:03Z", "2025-01-30T12:00:03Z", "2025-01-29T00:00:00Z"],
        "label": [1, 0, 1],
    }


def test_training_export_to_a_file_names_its_seq(client: TestClient, root: Path) -> None:
    r = client.post(
        "/v1/training-export",
        json={
            "entities": _entities(),
            "features": ["user_stats:ctr", "user_stats:country"],
            "out": "t1.parquet",
        },
    )
    assert r.status_code == 200, r.text
    info = r.json()
    assert set(info) == {"seq", "rows", "path"} and info["rows"] == 3
    assert Path(info["path"]).resolve() == (root / "exports" / "t1.parquet").resolve()
    table = pq.read_table(info["path"])
    assert table.column_names[:3] == ["user_id", "event_timestamp", "label"]
    # point in time: user 1 at 12:00:03 sees its row (event 12:00:03, inclusive); user 2 at 12:00:03
    # is before its only row (12:00:04): null; user 1 a day earlier: nothing yet.
    assert table.column("ctr").to_pylist() == [0.25, None, None]
    assert table.column("country").to_pylist() == ["NL", None, None]
    assert table.column("label").to_pylist() == [1, 0, 1]
    again = client.post(
        "/v1/training-export",
        json={"entities": _entities(), "features": ["user_stats:ctr"], "out": "t1.parquet"},
    )
    assert again.status_code == 409


def test_training_export_streams_parquet_and_arrow(client: TestClient, root: Path) -> None:
    body = {"entities": _entities(), "feature_service": "ranking_v1"}
    r = client.post(
        "/v1/training-export",
        json={**body, "entities": {**_entities(), "item_id": ["a", "a", "b"]}},
        headers={"Accept": "application/vnd.apache.parquet"},
    )
    assert r.status_code == 200, r.text
    assert int(r.headers["X-Rickhouse-Seq"]) == last_seq(client)
    table = pq.read_table(io.BytesIO(r.content))
    assert table.num_rows == 3 and "clicks" in table.column_names
    r2 = client.post(
        "/v1/training-export",
        json={**body, "entities": {**_entities(), "item_id": ["a", "a", "b"]}},
        headers={"Accept": ARROW},
    )
    assert r2.status_code == 200 and r2.headers["content-type"].startswith(ARROW)
    streamed = pa.ipc.open_stream(r2.content).read_all()
    assert streamed.equals(table)
    leftovers = [p.name for p in (root / "exports").iterdir() if p.name.startswith(".stream-")]
    assert leftovers == []


def test_training_export_from_arrow_body_and_parquet_path(client: TestClient, root: Path) -> None:
    entities = pa.table(
        {
            "user_id": pa.array([1, 2], pa.int64()),
            "event_timestamp": pa.array([1_800_000_000_000_000_000] * 2, pa.int64()).cast(
                pa.timestamp("ns", tz="UTC")
            ),
        }
    )
    r = client.post(
        "/v1/training-export?features=user_stats:visits&output=stream",
        content=arrow_ipc(entities),
        headers={"Content-Type": ARROW, "Accept": ARROW},
    )
    assert r.status_code == 200, r.text
    assert pa.ipc.open_stream(r.content).read_all().column("visits").to_pylist() == [10, 20]
    (root / "inputs").mkdir(exist_ok=True)
    pq.write_table(entities, root / "inputs" / "ents.parquet")
    r = client.post(
        "/v1/training-export",
        json={"entities_path": "inputs/ents.parquet", "features": ["user_stats:visits"]},
    )
    assert r.status_code == 200, r.text
    assert pq.read_table(r.json()["path"]).column("visits").to_pylist() == [10, 20]


def test_as_of_seq_reproduces_an_export(client: TestClient) -> None:
    ents = {"user_id": [777], "event_timestamp": ["2030-01-01T00:00:00Z"]}
    client.post(
        "/v1/ingest/user_stats", json=user_rows([777], [1], "2025-01-01T00:00:00Z")
    ).raise_for_status()
    first = client.post(
        "/v1/training-export", json={"entities": ents, "features": ["user_stats:visits"]}
    ).json()
    client.post(
        "/v1/ingest/user_stats", json=user_rows([777], [2], "2025-01-02T00:00:00Z")
    ).raise_for_status()
    later = client.post(
        "/v1/training-export", json={"entities": ents, "features": ["user_stats:visits"]}
    ).json()
    again = client.post(
        "/v1/training-export",
        json={"entities": ents, "features": ["user_stats:visits"], "as_of_seq": first["seq"]},
    ).json()
    assert later["seq"] > first["seq"] and again["seq"] == first["seq"]
    assert pq.read_table(first["path"]).column("visits").to_pylist() == [1]
    assert pq.read_table(later["path"]).column("visits").to_pylist() == [2]
    assert pq.read_table(again["path"]).column("visits").to_pylist() == [1]


def test_definitions_views_stats_audit(client: TestClient) -> None:
    d = client.get("/v1/definitions").json()
    assert [v["name"] for v in d["feature_views"]] == ["user_stats", "user_item", "stale"]
    assert client.put("/v1/definitions", json=DEFS).status_code == 200  # identical: no change
    grown = yaml.safe_load(yaml.safe_dump(DEFS))
    grown["feature_views"][1]["features"].append({"name": "new_feat", "dtype": "float32"})
    r = client.put(
        "/v1/definitions",
        content=yaml.safe_dump(grown),
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 200, r.text
    out = client.post(
        "/get-online-features",
        json={"entities": {"user_id": [1], "item_id": ["a"]}, "features": ["user_item:new_feat"]},
    ).json()
    assert out["results"][2]["values"] == [None]  # added feature: older rows read null
    changed = yaml.safe_load(yaml.safe_dump(grown))
    changed["feature_views"][0]["features"][0]["dtype"] = "string"  # a type change is refused
    r = client.put("/v1/definitions", json=changed)
    assert r.status_code == 422 and "ctr" in r.json()["error"]["message"]
    views = client.get("/v1/feature-views").json()
    assert [v["name"] for v in views] == ["user_stats", "user_item", "stale"]
    one = client.get("/v1/feature-views/user_item").json()
    assert [f["name"] for f in one["features"]] == ["clicks", "score", "new_feat"]
    nf = client.get("/v1/feature-views/nope")
    assert nf.status_code == 404 and nf.json()["error"]["type"] == "UnknownViewError"
    stats = client.get("/v1/stats").json()
    assert stats["last_seq"] >= 3 and "commit_log" in stats and "user_stats" in stats["online"]
    audit = client.post("/v1/audit").json()
    assert set(audit) == {"user_stats", "user_item", "stale"}
    assert all(v["mismatches"] == 0 for v in audit.values())
    r = client.post("/v1/compact")
    assert r.status_code == 200 and all(
        v["mismatches"] == 0 for v in client.post("/v1/audit").json().values()
    )


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    client.post(
        "/get-online-features", json={"entities": {"user_id": [1]}, "features": ["user_stats:ctr"]}
    )
    client.post(
        "/get-online-features", json={"entities": {"user_id": [1]}, "features": ["nope:ctr"]}
    )
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for needle in (
        'rickhouse_http_requests_total{endpoint="/get-online-features",method="POST",status="200"}',
        'rickhouse_http_requests_total{endpoint="/get-online-features",method="POST",status="404"}',
        'rickhouse_http_request_duration_seconds_bucket{endpoint="/get-online-features",le="+Inf"}',
        "rickhouse_ingested_rows_total",
        "rickhouse_online_lookups_total",
        "rickhouse_commit_log_bytes",
        'rickhouse_compactions_total{view="user_stats"}',
        "rickhouse_up 1",
    ):
        assert needle in text, needle


def test_openapi_documents_the_hand_parsed_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/get-online-features",
        "/write-to-online-store",
        "/push",
        "/v1/ingest/{view}",
        "/v1/training-export",
    ):
        body = spec["paths"][path]["post"]["requestBody"]
        assert "application/json" in body["content"], path
    assert ARROW in spec["paths"]["/v1/ingest/{view}"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200
