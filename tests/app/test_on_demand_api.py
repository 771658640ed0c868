"""On-demand features over HTTP: /v1/definitions shows them, /get-online-features takes request
fields in "entities" (as Feast sends request data) and refuses a missing one with a 422 naming
it, /v1/training-export computes them over the entity rows' columns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from store import FeatureStore
from tests.app.conftest import make_client
from tests.store.test_on_demand import T0, odv_defs


def make_odv_root(root: Path) -> Path:
    with FeatureStore(root) as fs:
        fs.apply(odv_defs())
        fs.ingest(
            "user_profile",
            {
                "user_id": [7, 8],
                "event_timestamp": [T0, T0],
                "age": [30, None],
                "avg": [60.0, 0.0],
                "country": ["SE", "FI"],
            },
        )
    return root


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = make_odv_root(tmp_path_factory.mktemp("odv") / "root")
    with make_client(root) as c:
        yield c


def test_definitions_show_on_demand_views(client: TestClient) -> None:
    r = client.get("/v1/definitions")
    assert r.status_code == 200
    assert r.json()["on_demand_views"] == odv_defs()["on_demand_views"]


def test_online_reads_take_request_fields_in_entities(client: TestClient) -> None:
    r = client.post(
        "/get-online-features",
        json={
            "features": ["txn_risk:amount_vs_avg", "txn_risk:minor", "user_profile:age"],
            "entities": {"user_id": [7, 8, 9], "amount": [120.0, 5, None]},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metadata"]["feature_names"] == ["user_id", "age", "amount_vs_avg", "minor"]
    ratio, minor = body["results"][2], body["results"][3]
    assert ratio["values"] == [2.0, None, None]
    assert ratio["statuses"] == ["PRESENT", "NULL_VALUE", "NULL_VALUE"]
    assert minor["values"] == [False, True, True]
    assert minor["statuses"] == ["PRESENT"] * 3
    assert minor["event_timestamps"] == ["1970-01-01T00:00:00Z"] * 3
    one = client.post(
        "/get-online-features",
        json={"feature_service": "risk_v1", "entities": {"user_id": [7], "amount": [6]}},
    )
    assert one.status_code == 200, one.text
    assert [res["values"] for res in one.json()["results"]] == [[7], [30], [0.1]]


@pytest.mark.parametrize(
    "entities",
    [{"user_id": [7]}, {"user_id": [7], "amount": ["x"]}],
)
def test_missing_or_mistyped_request_fields_are_422_naming_them(
    client: TestClient, entities: dict
) -> None:
    r = client.post(
        "/get-online-features",
        json={"features": ["txn_risk:amount_vs_avg"], "entities": entities},
    )
    assert r.status_code == 422, r.text
    assert "'amount'" in r.text


def test_unknown_on_demand_feature_is_404(client: TestClient) -> None:
    r = client.post(
        "/get-online-features",
        json={"features": ["txn_risk:nope"], "entities": {"user_id": [7], "amount": [1.0]}},
    )
    assert r.status_code == 404, r.text
    assert "nope" in r.text


def test_training_export_computes_over_entity_columns(client: TestClient) -> None:
    r = client.post(
        "/v1/training-export",
        json={
            "entities": {
                "user_id": [7, 8],
                "event_timestamp": ["2025-01-02T00:00:00Z"] * 2,
                "amount": [30, 1.5],
            },
            "features": ["txn_risk:amount_vs_avg", "txn_risk:label"],
            "out": "odv.parquet",
        },
    )
    assert r.status_code == 200, r.text
    table = pq.read_table(r.json()["path"])
    assert table.column("amount_vs_avg").to_pylist() == [0.5, None]
    assert table.column("label").to_pylist() == [None, "fi"]
    missing = client.post(
        "/v1/training-export",
        json={
            "entities": {"user_id": [7], "event_timestamp": ["2025-01-02T00:00:00Z"]},
            "features": ["txn_risk:amount_vs_avg"],
        },
    )
    assert missing.status_code == 422, missing.text
    assert "'amount'" in missing.text
