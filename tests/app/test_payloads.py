"""app/payloads.py: request bodies are checked before any store call, errors name the field."""

import orjson
import pytest

from app.catalog import Catalog
from app.errors import BadRequestError, NotFoundApiError
from app.payloads import (
    check_refs,
    coerce_keys,
    parse_ingest_json,
    parse_online_request,
    parse_push_request,
    parse_write_request,
)

DEFS = {
    "entities": [
        {"name": "user", "join_keys": ["user_id"], "dtype": "int64"},
        {"name": "item", "join_keys": ["item_id"], "dtype": "string"},
    ],
    "feature_views": [
        {
            "name": "user_stats",
            "entities": ["user"],
            "features": [
                {"name": "ctr", "dtype": "float32"},
                {"name": "country", "dtype": "string"},
            ],
        },
        {
            "name": "ui",
            "entities": ["user", "item"],
            "features": [{"name": "clicks", "dtype": "int32"}],
        },
    ],
    "feature_services": [{"name": "svc", "features": ["user_stats:ctr", "ui:clicks"]}],
    "push_sources": [{"name": "p", "feature_view": "user_stats"}],
}
CAT = Catalog.from_definitions(DEFS)


def body(obj: object) -> bytes:
    return orjson.dumps(obj)


def test_catalog_resolves_composite_join_keys() -> None:
    assert CAT.views["ui"].join_keys == ("user_id", "item_id")
    assert CAT.key_dtypes == {"user_id": "int64", "item_id": "string"}
    assert CAT.services["svc"] == ("user_stats:ctr", "ui:clicks")
    assert CAT.views_of(["ui:clicks", "user_stats:ctr", "ui:x"]) == ["ui", "user_stats"]


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
        CAT,
    )
    assert req.entities == {"user_id": [1001, 1002], "item_id": ["7", "a"]}
    assert req.features == ["user_stats:ctr"] and req.full_feature_names and req.include_metadata


def test_feature_service_request_knows_its_refs() -> None:
    req = parse_online_request(body({"entities": {"user_id": [1]}, "feature_service": "svc"}), CAT)
    assert req.features == "svc" and req.refs == ["user_stats:ctr", "ui:clicks"]


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
        (body({"entities": {"user_id": [True]}, "features": ["a:b"]}), "row 0"),
        (body({"entities": {"user_id": [1, 1.5]}, "features": ["a:b"]}), "row 1"),
        (body({"entities": {"user_id": ["1; DROP TABLE x"]}, "features": ["a:b"]}), "not an int64"),
        (body({"entities": {"user_id": [2**63]}, "features": ["a:b"]}), "int64"),
        (body({"entities": {"item_id": [None]}, "features": ["a:b"]}), "not a string"),
    ],
)
def test_malformed_online_requests_are_422_naming_the_problem(raw: bytes, fragment: str) -> None:
    with pytest.raises(BadRequestError, match=fragment) as info:
        parse_online_request(raw, CAT)
    assert info.value.status == 422


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


def test_refs_are_checked_against_definitions() -> None:
    check_refs(["user_stats:ctr", "ui:clicks"], CAT)
    with pytest.raises(NotFoundApiError, match="nope"):
        check_refs(["nope:ctr"], CAT)
    with pytest.raises(NotFoundApiError, match="'; DROP"):
        check_refs(["user_stats:'; DROP TABLE x; --"], CAT)


def test_keys_of_the_right_type_pass_through_unchanged() -> None:
    entities = {"user_id": [1, 2], "item_id": ["a"], "other": [object()]}
    out = coerce_keys(entities, CAT)
    assert out["user_id"] is entities["user_id"] and out["other"] is entities["other"]
