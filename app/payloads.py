"""The wire shape of JSON and YAML request payloads, without pydantic: orjson + dicts.

What is checked here is the shape only: JSON objects, lists of one equal length, names that are
strings, flags that are booleans, "view:feature" strings; a violation is a `BadRequestError`
(422) naming the field. What the values mean (which views, features and services exist, the
types of entity keys and columns, nulls, timestamps) is checked once, by the FeatureStore call
that receives them, whose errors app/errors.py maps to HTTP. Pure functions; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson
import yaml

from app.errors import BadRequestError
from store.definitions import Definitions

PUSH_TARGETS = ("online", "offline", "online_and_offline")
# Definitions are hundreds of values. YAML aliases share one object among many places, so a
# body of a few hundred bytes can stand for 10**9 values (or a cycle); anything that walks or
# prints it (a message naming the bad value) would take the process down with it.
MAX_YAML_VALUES = 100_000


def parse_json(body: bytes) -> Any:
    """orjson.loads with a 422 that says where the JSON broke."""
    if not body:
        raise BadRequestError("the request body is empty: send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the request body is not valid JSON: {exc}") from None


def parse_yaml(body: bytes) -> Any:
    """yaml.safe_load with a 422 that says where the YAML broke, and a bound on what its
    aliases expand to (MAX_YAML_VALUES values, counted as if every alias were copied)."""
    try:
        obj = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        raise BadRequestError(f"the body is not valid YAML: {exc}") from None
    stack, seen = [obj], 0
    while stack:  # stops after MAX_YAML_VALUES steps whatever the aliases expand to
        value = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            raise BadRequestError(
                f"the YAML body expands to more than {MAX_YAML_VALUES} values (through "
                "aliases, or an alias that contains itself); write the definitions out"
            )
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return obj


def require_object(obj: Any, what: str = "the request body") -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise BadRequestError(f"{what} must be a JSON object, got {_kind(obj)}")
    return obj


def check_columns(columns: Any, what: str) -> int:
    """Checks a columnar mapping {name: [values]}: non-empty, lists of one equal length > 0.

    Returns the number of rows.
    """
    if not isinstance(columns, dict):
        raise BadRequestError(
            f"{what} must be a JSON object of columns {{name: [values, ...]}}, got {_kind(columns)}"
        )
    if not columns:
        raise BadRequestError(f"{what} has no columns")
    rows = -1
    first = ""
    for name, values in columns.items():
        if not isinstance(values, list):
            raise BadRequestError(f"{what}[{name!r}] must be a list of values, got {_kind(values)}")
        if rows < 0:
            rows, first = len(values), name
        elif len(values) != rows:
            raise BadRequestError(
                f"{what} has lists of unequal length: {first!r} has {rows} values, "
                f"{name!r} has {len(values)}"
            )
    if rows == 0:
        raise BadRequestError(f"{what} has no rows")
    return rows


def key_dtypes(defs: Definitions) -> dict[str, str]:
    """{join key: "int64" | "string"} of every entity of `defs`."""
    return {key: e.dtype for e in defs.entities.values() for key in e.join_keys}


def wire_keys(entities: dict[str, list], dtypes: Mapping[str, str]) -> dict[str, list]:
    """Feast's wire form of string keys: JSON integers become their decimal text, as Feast
    clients send a string key either way. Every other value is left for the store's one check
    of entity keys (`store.entities.parse_entities`), which names the key and row it refuses.

    dtypes: {join key: dtype}, see `key_dtypes`. Returns `entities`, or a copy when converted.
    """
    out = entities
    for key, values in entities.items():
        if dtypes.get(key) == "string" and set(map(type, values)) != {str}:
            if out is entities:
                out = dict(entities)
            out[key] = [str(v) if type(v) is int else v for v in values]
    return out


def parse_features(obj: dict[str, Any]) -> list[str] | str:
    """`features` (list of "view:feature") or `feature_service` (name), as the store takes them;
    whether they exist is the store's to say (404 naming the view, feature or service)."""
    features = obj.get("features")
    service = obj.get("feature_service")
    if features is not None and service is not None:
        raise BadRequestError("send either 'features' or 'feature_service', not both")
    if service is not None:
        if not isinstance(service, str) or not service:
            raise BadRequestError(
                f"'feature_service' must be a non-empty string, got {_kind(service)}"
            )
        return service
    if features is None:
        raise BadRequestError(
            "missing 'features' (a list of \"view:feature\") or 'feature_service'"
        )
    if not isinstance(features, list) or not features:
        raise BadRequestError(
            f"'features' must be a non-empty list of strings, got {_kind(features)}"
        )
    for i, ref in enumerate(features):
        if (
            not isinstance(ref, str)
            or ref.count(":") != 1
            or ref.startswith(":")
            or ref.endswith(":")
        ):
            raise BadRequestError(f"'features'[{i}] = {ref!r} is not a \"view:feature\" reference")
    return features


def parse_flag(obj: dict[str, Any], name: str, default: bool = False) -> bool:
    value = obj.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequestError(f"{name!r} must be true or false, got {_kind(value)}")
    return value


def parse_name(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise BadRequestError(f"missing {name!r}")
    if not isinstance(value, str) or not value:
        raise BadRequestError(f"{name!r} must be a non-empty string, got {_kind(value)}")
    return value


class OnlineRequest(NamedTuple):
    features: list[str] | str  # refs, or a feature service name
    entities: dict[str, list]  # {join key: values}, string keys in wire_keys form
    full_feature_names: bool
    include_metadata: bool


def parse_online_request(body: bytes, dtypes: Mapping[str, str]) -> OnlineRequest:
    """POST /get-online-features body -> the arguments of one batched store call.

    dtypes: {join key: dtype} of the applied definitions (`key_dtypes`)."""
    obj = require_object(parse_json(body))
    if "entities" not in obj:
        raise BadRequestError("missing 'entities' (columnar: {join_key: [values, ...]})")
    entities = obj["entities"]
    check_columns(entities, "'entities'")
    return OnlineRequest(
        parse_features(obj),
        wire_keys(entities, dtypes),
        parse_flag(obj, "full_feature_names"),
        parse_flag(obj, "include_feature_view_version_metadata"),
    )


def parse_write_request(body: bytes) -> tuple[str, dict[str, list]]:
    """POST /write-to-online-store -> (feature view name, columnar df)."""
    obj = require_object(parse_json(body))
    view = parse_name(obj, "feature_view_name")
    if "df" not in obj:
        raise BadRequestError("missing 'df' (columnar: {column: [values, ...]})")
    check_columns(obj["df"], "'df'")
    return view, drop_null_created(obj["df"])


def drop_null_created(df: dict[str, list]) -> dict[str, list]:
    """Feast's remote client sends `created: [null, ...]` when it has no created timestamps;
    FEAST_REST.md lets `created` be null or absent. An all-null column means "absent" (the store
    then uses the ingest time); a partly null one goes to the store, which names the row."""
    created = df.get("created")
    if created is not None and all(v is None for v in created):
        df = {k: v for k, v in df.items() if k != "created"}
    return df


def parse_push_request(body: bytes) -> tuple[str, dict[str, list], str]:
    """POST /push -> (push source name, columnar df, to)."""
    obj = require_object(parse_json(body))
    name = parse_name(obj, "push_source_name")
    if "df" not in obj:
        raise BadRequestError("missing 'df' (columnar: {column: [values, ...]})")
    check_columns(obj["df"], "'df'")
    to = obj.get("to", "online")
    if to is None:
        to = "online"
    if to not in PUSH_TARGETS:
        raise BadRequestError(f"'to' = {to!r} is not one of {', '.join(PUSH_TARGETS)}")
    return name, drop_null_created(obj["df"]), to


def records_to_columns(records: list[Any]) -> dict[str, list]:
    """[{col: v}, ...] -> {col: [v, ...]}; a column missing from a record reads null there."""
    if not records:
        raise BadRequestError("the request body has no rows")
    names: dict[str, None] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise BadRequestError(f"row {i} must be a JSON object, got {_kind(record)}")
        for name in record:
            names.setdefault(name, None)
    return {name: [r.get(name) for r in records] for name in names}


def parse_ingest_json(body: bytes) -> dict[str, list]:
    """POST /v1/ingest/{view} with JSON: columns {col: [..]} or records [{col: v}, ...]."""
    obj = parse_json(body)
    if isinstance(obj, list):
        columns = records_to_columns(obj)
    elif isinstance(obj, dict):
        columns = obj
    else:
        raise BadRequestError(
            f"the body must be columns {{col: [values]}} or records [{{col: value}}], got {_kind(obj)}"
        )
    check_columns(columns, "the body")
    return columns


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str | list) and not value:  # "got a string" would puzzle the sender
        return "an empty string" if isinstance(value, str) else "an empty list"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
