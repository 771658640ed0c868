"""Request-body documentation for the hand-parsed endpoints (OpenAPI `openapi_extra`).

The hot-path endpoints read raw bytes and parse them with orjson, so FastAPI cannot infer their
bodies; these schemas and examples document them in /docs and /openapi.json. Documentation only:
nothing here validates a request.
"""

from __future__ import annotations

from typing import Any

COLUMNS = {
    "type": "object",
    "description": "Columnar values: {column: [value, ...]}, all lists of one length.",
    "additionalProperties": {"type": "array", "items": {}},
}


def json_body(schema: dict[str, Any], example: Any, extra: dict[str, Any] | None = None) -> dict:
    content: dict[str, Any] = {"application/json": {"schema": schema, "example": example}}
    content.update(extra or {})
    return {"requestBody": {"required": True, "content": content}}


GET_ONLINE_FEATURES = json_body(
    {
        "type": "object",
        "required": ["entities"],
        "properties": {
            "entities": COLUMNS,
            "features": {
                "type": "array",
                "items": {"type": "string"},
                "description": '"view:feature"',
            },
            "feature_service": {"type": "string"},
            "full_feature_names": {"type": "boolean", "default": False},
            "include_feature_view_version_metadata": {"type": "boolean", "default": False},
        },
    },
    {
        "entities": {"user_id": [1001, 1002]},
        "features": ["user_profile:country", "user_profile:ctr_7d"],
    },
)

WRITE_TO_ONLINE_STORE = json_body(
    {
        "type": "object",
        "required": ["feature_view_name", "df"],
        "properties": {
            "feature_view_name": {"type": "string"},
            "df": COLUMNS,
            "allow_registry_cache": {"type": "boolean"},
            "transform_on_write": {"type": "boolean"},
        },
    },
    {
        "feature_view_name": "user_profile",
        "df": {"user_id": [1001], "ctr_7d": [0.05], "event_timestamp": ["2025-01-31T12:00:00"]},
    },
)

PUSH = json_body(
    {
        "type": "object",
        "required": ["push_source_name", "df"],
        "properties": {
            "push_source_name": {"type": "string"},
            "df": COLUMNS,
            "to": {"type": "string", "enum": ["online", "offline", "online_and_offline"]},
            "allow_registry_cache": {"type": "boolean"},
        },
    },
    {
        "push_source_name": "user_item_push",
        "df": {
            "user_id": [1001],
            "item_id": ["item_000042"],
            "clicks_30d": [3],
            "event_timestamp": ["2025-01-31T12:00:00"],
        },
        "to": "online_and_offline",
    },
)

INGEST = json_body(
    {
        "oneOf": [
            COLUMNS,
            {"type": "array", "items": {"type": "object"}, "description": "records"},
        ]
    },
    {
        "user_id": [1001, 1002],
        "ctr_7d": [0.1, 0.2],
        "event_timestamp": ["2025-01-31T00:00:00Z"] * 2,
    },
    {
        "application/vnd.apache.arrow.stream": {
            "schema": {"type": "string", "format": "binary"},
        }
    },
)

TRAINING_EXPORT = json_body(
    {
        "type": "object",
        "properties": {
            "entities": COLUMNS,
            "entities_path": {
                "type": "string",
                "description": "a Parquet file under the store root",
            },
            "features": {"type": "array", "items": {"type": "string"}},
            "feature_service": {"type": "string"},
            "as_of_seq": {"type": "integer", "minimum": 0},
            "output": {"type": "string", "enum": ["file", "stream"]},
            "out": {"type": "string", "description": "file name under <root>/exports/"},
        },
    },
    {
        "entities": {"user_id": [1001, 1002], "event_timestamp": ["2025-01-20T00:00:00Z"] * 2},
        "features": ["user_profile:country", "user_profile:ctr_7d"],
    },
    {
        "application/vnd.apache.arrow.stream": {
            "schema": {"type": "string", "format": "binary"},
            "description": "entity rows; features, feature_service, as_of_seq, output, out as query parameters",
        }
    },
)

DEFINITIONS = json_body(
    {"type": "object", "description": "definitions in the YAML shape (JSON, or YAML text)"},
    {
        "entities": [{"name": "user", "join_keys": ["user_id"], "dtype": "int64"}],
        "feature_views": [
            {
                "name": "user_profile",
                "entities": ["user"],
                "ttl": "0",
                "features": [{"name": "ctr_7d", "dtype": "float32"}],
            }
        ],
    },
    {"application/yaml": {"schema": {"type": "string"}}},
)
