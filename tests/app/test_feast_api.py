"""Feast-compatible endpoints, compared field by field with ../shared/FEAST_REST.md."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import last_seq

EPOCH = "1970-01-01T00:00:00Z"


def online(client: TestClient, body: dict, status: int = 200) -> dict:
    r = client.post("/get-online-features", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def feast_error(r, status: int, cls: str) -> dict:  # noqa: ANN001
    """The double-encoded Feast error body: a JSON string holding {module, class, message}."""
    assert r.status_code == status, r.text
    outer = r.json()
    assert isinstance(outer, str), f"Feast clients need a JSON string body, got {outer!r}"
    inner = json.loads(outer)
    assert set(inner) == {"module", "class", "message"}
    assert inner["module"] == "feast.errors" and inner["class"] == cls
    assert inner["message"]
    return inner


def test_response_shape_field_by_field(client: TestClient) -> None:
    out = online(
        client,
        {
            "entities": {"user_id": [1, 2, 999]},
            "features": [
                "user_stats:ctr",
                "user_stats:country",
                "user_stats:emb",
                "user_stats:seen",
            ],
        },
    )
    assert set(out) == {"metadata", "results"}
    assert out["metadata"] == {"feature_names": ["user_id", "ctr", "country", "emb", "seen"]}
    results = out["results"]
    assert len(results) == 5 and all(
        set(r) == {"values", "statuses", "event_timestamps"} for r in results
    )
    # Join-key column first: the values as sent, PRESENT, the epoch.
    assert results[0] == {
        "values": [1, 2, 999],
        "statuses": ["PRESENT"] * 3,
        "event_timestamps": [EPOCH] * 3,
    }
    ts = ["2025-01-30T12:00:03Z", "2025-01-30T12:00:04Z", EPOCH]
    status = ["PRESENT", "PRESENT", "NOT_FOUND"]
    assert results[1] == {"values": [0.25, 0.5, None], "statuses": status, "event_timestamps": ts}
    assert results[2] == {"values": ["NL", "US", None], "statuses": status, "event_timestamps": ts}
    assert results[3] == {
        "values": [[1.0, 2.0, 3.0], [0.5, 0.25, 0.125], None],
        "statuses": status,
        "event_timestamps": ts,
    }
    # a timestamp feature: epoch seconds, as Feast's own server answers a UnixTimestamp
    assert results[4]["values"] == [1738234800, 1738236600, None]


def test_null_feature_is_null_value_and_old_row_is_outside_max_age(client: TestClient) -> None:
    out = online(
        client,
        {"entities": {"user_id": [3, 1]}, "features": ["user_stats:ctr", "user_stats:visits"]},
    )
    ctr, visits = out["results"][1], out["results"][2]
    assert ctr["values"] == [None, 0.25] and ctr["statuses"] == ["NULL_VALUE", "PRESENT"]
    assert ctr["event_timestamps"] == ["2025-01-29T00:00:00Z", "2025-01-30T12:00:03Z"]
    assert visits["values"] == [30, 10] and visits["statuses"] == ["PRESENT", "PRESENT"]
    stale = online(client, {"entities": {"user_id": [1, 2]}, "features": ["stale:old"]})["results"][
        1
    ]
    assert stale["values"] == [None, None]
    assert stale["statuses"] == ["OUTSIDE_MAX_AGE", "NOT_FOUND"]


def test_entity_values_may_be_strings_for_int_keys(client: TestClient) -> None:
    a = online(client, {"entities": {"user_id": ["1", "2"]}, "features": ["user_stats:visits"]})
    b = online(client, {"entities": {"user_id": [1, 2]}, "features": ["user_stats:visits"]})
    assert a["results"][1] == b["results"][1] and a["results"][1]["values"] == [10, 20]


def test_full_feature_names_and_view_metadata(client: TestClient) -> None:
    out = online(
        client,
        {
            "entities": {"user_id": [1]},
            "features": ["user_stats:ctr", "user_stats:premium"],
            "full_feature_names": True,
            "include_feature_view_version_metadata": True,
        },
    )
    assert out["metadata"]["feature_names"] == ["user_id", "user_stats__ctr", "user_stats__premium"]
    assert out["metadata"]["feature_view_metadata"] == [{"name": "user_stats"}]
    assert out["results"][2]["values"] == [True]
    plain = online(client, {"entities": {"user_id": [1]}, "features": ["user_stats:ctr"]})
    assert "feature_view_metadata" not in plain["metadata"]


def test_composite_key_and_feature_service(client: TestClient) -> None:
    out = online(
        client,
        {
            "entities": {"user_id": [1, 1, 2, 2], "item_id": ["a", "b", "a", "b"]},
            "feature_service": "ranking_v1",
        },
    )
    assert out["metadata"]["feature_names"] == ["user_id", "item_id", "ctr", "clicks"]
    assert out["results"][1]["values"] == ["a", "b", "a", "b"]
    assert out["results"][2]["values"] == [0.25, 0.25, 0.5, 0.5]
    assert out["results"][3]["values"] == [3, 4, 5, None]
    assert out["results"][3]["statuses"] == ["PRESENT", "PRESENT", "PRESENT", "NOT_FOUND"]


def test_write_to_online_store_as_feasts_remote_client_sends_it(client: TestClient) -> None:
    before = last_seq(client)
    body = {
        "feature_view_name": "user_stats",
        "df": {
            "user_id": [900000201],
            "ctr": [0.05],
            "country": ["US"],
            "visits": [1],
            "premium": [False],
            "emb": [[0.0, 1.0, 0.0]],
            "seen": ["2025-01-31T11:00:00"],
            "event_timestamp": ["2025-01-31T12:00:00"],  # naive = UTC
            "created": [None],
        },
        "allow_registry_cache": False,
        "transform_on_write": True,
    }
    r = client.post(
        "/write-to-online-store", content=json.dumps(body)
    )  # no Content-Type, as requests sends it
    assert r.status_code == 200 and r.content == b"null"
    assert last_seq(client) == before + 1
    out = online(
        client,
        {
            "entities": {"user_id": [900000201]},
            "features": ["user_stats:country", "user_stats:ctr"],
        },
    )
    assert out["results"][1] == {
        "values": ["US"],
        "statuses": ["PRESENT"],
        "event_timestamps": ["2025-01-31T12:00:00Z"],
    }
    assert out["results"][2]["values"] == [pytest.approx(0.05)]


def test_push_writes_both_stores_and_answers_empty(client: TestClient) -> None:
    before = last_seq(client)
    df = {
        "user_id": [900000301],
        "ctr": [0.75],
        "country": ["FR"],
        "visits": [7],
        "premium": [True],
        "emb": [None],
        "seen": [None],
        "event_timestamp": ["2025-01-31T00:00:00Z"],
    }
    r = client.post(
        "/push", json={"push_source_name": "user_stats_push", "df": df, "to": "online_and_offline"}
    )
    assert r.status_code == 200 and r.content == b""
    r = client.post(
        "/push", json={"push_source_name": "user_stats_push", "df": df, "to": "offline"}
    )
    assert r.status_code == 200  # rickhouse writes both stores whatever `to` says
    assert last_seq(client) == before + 2
    out = online(
        client,
        {
            "entities": {"user_id": [900000301]},
            "features": ["user_stats:country", "user_stats:emb"],
        },
    )
    assert out["results"][1]["values"] == ["FR"]
    assert out["results"][2]["statuses"] == ["NULL_VALUE"]
    audit = client.post("/v1/audit").json()
    assert all(v["mismatches"] == 0 for v in audit.values())


def test_health_is_a_200_listing_no_stale_view(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"stale": []}
    r = client.head("/health")
    assert r.status_code == 200 and r.content == b""


@pytest.mark.parametrize(
    "body, status, cls",
    [
        (
            {"entities": {"user_id": [1]}, "features": ["nope:ctr"]},
            404,
            "FeatureViewNotFoundException",
        ),
        (
            {"entities": {"user_id": [1]}, "features": ["user_stats:nope"]},
            404,
            "FeatureViewNotFoundException",
        ),
        (
            {"entities": {"user_id": [1]}, "feature_service": "nope"},
            404,
            "FeatureServiceNotFoundException",
        ),
        ({"entities": {"item_id": ["a"]}, "features": ["user_stats:ctr"]}, 422, "FeastError"),
        (
            {"entities": {"user_id": [1, 2], "x": [1]}, "features": ["user_stats:ctr"]},
            422,
            "FeastError",
        ),
        ({"entities": {"user_id": ["one"]}, "features": ["user_stats:ctr"]}, 422, "FeastError"),
        ({"features": ["user_stats:ctr"]}, 422, "FeastError"),
    ],
)
def test_bad_online_requests_are_feast_errors(
    client: TestClient, body: dict, status: int, cls: str
) -> None:
    feast_error(client.post("/get-online-features", json=body), status, cls)


def test_bad_writes_are_feast_errors_and_write_nothing(client: TestClient) -> None:
    before = last_seq(client)
    df = {"user_id": [5], "event_timestamp": ["2025-01-31T00:00:00Z"], "ctr": [0.1]}
    feast_error(
        client.post("/write-to-online-store", json={"feature_view_name": "nope", "df": df}),
        404,
        "FeatureViewNotFoundException",
    )
    # missing feature columns, a wrong type: refused whole
    feast_error(
        client.post("/write-to-online-store", json={"feature_view_name": "user_stats", "df": df}),
        422,
        "FeastError",
    )
    feast_error(
        client.post("/push", json={"push_source_name": "nope", "df": df}),
        404,
        "PushSourceNotFoundException",
    )
    inner = feast_error(
        client.post("/push", json={"push_source_name": "user_stats_push", "df": df, "to": "disk"}),
        422,
        "FeastError",
    )
    assert "online_and_offline" in inner["message"]
    assert last_seq(client) == before


def test_unknown_feature_message_names_it(client: TestClient) -> None:
    inner = feast_error(
        client.post(
            "/get-online-features",
            json={"entities": {"user_id": [1]}, "features": ["user_stats:nope"]},
        ),
        404,
        "FeatureViewNotFoundException",
    )
    assert "nope" in inner["message"]


def test_lookups_in_the_read_pool_answer_the_same(client: TestClient, tmp_path) -> None:  # noqa: ANN001
    """RICKHOUSE_INLINE_LOOKUPS=0: the same request through the read thread pool."""
    from tests.app.conftest import make_client, make_root

    body = {"entities": {"user_id": [1, 2, 999]}, "features": ["user_stats:ctr", "user_stats:emb"]}
    with make_client(make_root(tmp_path), inline_lookups=False) as pooled:
        assert pooled.app.state.service.settings.inline_lookups is False
        r = pooled.post("/get-online-features", json=body)
        assert r.status_code == 200
        assert r.json()["results"][1:] == online(client, body)["results"][1:]
        feast_error(
            pooled.post(
                "/get-online-features", json={"entities": {"user_id": [1]}, "features": ["x:y"]}
            ),
            404,
            "FeatureViewNotFoundException",
        )
