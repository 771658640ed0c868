"""app/payloads.py: the wire shape of request bodies is checked before any store call, errors
name the field; what the values mean is the store's to check (the key and ref cases below go
through the server, where the store's one check answers)."""

import orjson
import pytest
from fastapi.testclient import TestClient

from app.errors import BadRequestError
from app.payloads import (
    key_dtypes,
    parse_ingest_json,
    parse_online_request,
    parse_push_request,
    parse_write_request,
    wire_keys,
)
from store import Definitions
from tests.definitions import definitions, view

DEFS = definitions(
    view("user_stats", ["user"], {"ctr": "float32", "country": "string"}),
    view("ui", ["user", "item"], {"clicks": "int32"}),
    services={"svc": ["user_stats:ctr", "ui:clicks"]},
    pushes={"p": "user_stats"},
)
DEFINITIONS = Definitions.from_dict(DEFS)
KEYS = key_dtypes(DEFINITIONS)


def body(obj: object) -> bytes:
    return orjson.dumps(obj)


def test_definitions_resolve_composite_join_keys() -> None:
    assert DEFINITIONS.feature_views["ui"].join_keys == ["user_id", "item_id"]
    assert KEYS == {"user_id": "int64", "item_id": "string"}
    assert DEFINITIONS.feature_services["svc"].features == ("user_stats:ctr", "ui:clicks")


def test_online_request_is_parsed_and_keys_converted_by_entity_type() -> None:
    req = parse_online_request(
        body(
            {
                "entities": {"user_id": ["1001", 1002], "item_id": [7, "a"]},
                "features": ["user_stats:ctr"],
                "full_feature_names": True,
                "include_feature_view_version_metadata": True,
            }
        ),
        KEYS,
    )
    # string keys take Feast's wire form (ints as text); int64 keys go to the store as sent,
    # which parses decimal strings (store.entities.parse_entities)
    assert req.entities == {"user_id": ["1001", 1002], "item_id": ["7", "a"]}
    assert req.features == ["user_stats:ctr"] and req.full_feature_names and req.include_metadata


def test_feature_service_request_passes_the_service_name() -> None:
    req = parse_online_request(body({"entities": {"user_id": [1]}, "feature_service": "svc"}), KEYS)
    assert req.features == "svc"


def test_feature_service_metadata_names_its_views(client: TestClient) -> None:
    r = client.post(
        "/get-online-features",
        json={
            "entities": {"user_id": [1], "item_id": ["a"]},
            "feature_service": "ranking_v1",
            "include_feature_view_version_metadata": True,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["feature_view_metadata"] == [
        {"name": "user_stats"},
        {"name": "user_item"},
    ]


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (body({"features": ["user_stats:ctr"]}), "missing 'entities'"),
        (
            body({"entities": [1], "features": ["user_stats:ctr"]}),
            "'entities' must be a JSON object",
        ),
        (body({"entities": {}, "features": ["user_stats:ctr"]}), "no columns"),
        (body({"entities": {"user_id": 5}, "features": ["a:b"]}), "must be a list"),
        (body({"entities": {"user_id": [1, 2], "item_id": ["a"]}, "features": ["a:b"]}), "unequal"),
        (body({"entities": {"user_id": []}, "features": ["a:b"]}), "no rows"),
        (body({"entities": {"user_id": [1]}}), "missing 'features'"),
        (body({"entities": {"user_id": [1]}, "features": "user_stats:ctr"}), "non-empty list"),
        (body({"entities": {"user_id": [1]}, "features": ["nocolon"]}), "view:feature"),
        (body({"entities": {"user_id": [1]}, "features": [3]}), "view:feature"),
        (
            body({"entities": {"user_id": [1]}, "features": ["a:b"], "feature_service": "s"}),
            "not both",
        ),
        (body({"entities": {"user_id": [1]}, "feature_service": 7}), "feature_service"),
        (
            body({"entities": {"user_id": [1]}, "features": ["a:b"], "full_feature_names": "yes"}),
            "true or false",
        ),
    ],
)
def test_malformed_online_requests_are_422_naming_the_problem(raw: bytes, fragment: str) -> None:
    with pytest.raises(BadRequestError, match=fragment) as info:
        parse_online_request(raw, KEYS)
    assert info.value.status == 422


@pytest.mark.parametrize(
    "entities, fragment",
    [
        ({"user_id": [True]}, "row 0"),
        ({"user_id": [1, 1.5]}, "row 1"),
        ({"user_id": ["1; DROP TABLE x"]}, "not an int64"),
        ({"user_id": [2**63]}, "int64"),
        ({"item_id": [None], "user_id": [1]}, "not a string"),
    ],
)
def test_entity_keys_of_the_wrong_type_are_422_naming_key_and_row(
    client: TestClient, entities: dict, fragment: str
) -> None:
    features = ["user_item:clicks"] if "item_id" in entities else ["user_stats:ctr"]
    r = client.post("/get-online-features", json={"entities": entities, "features": features})
    assert r.status_code == 422, r.text
    assert fragment in orjson.loads(r.json())["message"]


def test_write_and_push_requests() -> None:
    view, df = parse_write_request(body({"feature_view_name": "v", "df": {"a": [1], "b": [2]}}))
    assert view == "v" and df == {"a": [1], "b": [2]}
    name, df, to = parse_push_request(body({"push_source_name": "p", "df": {"a": [1]}}))
    assert (name, to) == ("p", "online")
    with pytest.raises(BadRequestError, match="online_and_offline"):
        parse_push_request(body({"push_source_name": "p", "df": {"a": [1]}, "to": "disk"}))
    with pytest.raises(BadRequestError, match="feature_view_name"):
        parse_write_request(body({"df": {"a": [1]}}))
    with pytest.raises(BadRequestError, match="'df'"):
        parse_write_request(body({"feature_view_name": "v", "df": {"a": [1], "b": []}}))


def test_ingest_json_accepts_columns_and_records() -> None:
    assert parse_ingest_json(body({"a": [1, 2]})) == {"a": [1, 2]}
    assert parse_ingest_json(body([{"a": 1}, {"a": 2, "b": 3}])) == {"a": [1, 2], "b": [None, 3]}
    with pytest.raises(BadRequestError, match="row 1"):
        parse_ingest_json(body([{"a": 1}, 5]))
    with pytest.raises(BadRequestError):
        parse_ingest_json(body("text"))


@pytest.mark.parametrize("ref, fragment", [("nope:ctr", "nope"), ("user_stats:'; DROP", "'; DROP")])
def test_refs_are_checked_against_definitions(client: TestClient, ref: str, fragment: str) -> None:
    r = client.post("/get-online-features", json={"entities": {"user_id": [1]}, "features": [ref]})
    assert r.status_code == 404, r.text
    assert fragment in orjson.loads(r.json())["message"]
    r = client.post(
        "/v1/training-export",
        json={"entities": {"user_id": [1], "event_timestamp": ["2025-01-01"]}, "features": [ref]},
    )
    assert r.status_code == 404 and fragment in r.json()["error"]["message"], r.text


def test_keys_of_the_right_type_pass_through_unchanged() -> None:
    entities = {"user_id": [1, 2], "item_id": ["a"], "other": [object()]}
    assert wire_keys(entities, KEYS) is entities
    out = wire_keys({**entities, "item_id": [7, "a"]}, KEYS)
    assert out["item_id"] == ["7", "a"] and out["user_id"] is entities["user_id"]
