"""Hostile input: every malformed or wrong request is a 4xx naming the problem, never a 5xx,
and nothing is written (the last seq and the exports directory stay as they were)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import USER_STATS, arrow_ipc, last_seq, make_client, make_root

ARROW = "application/vnd.apache.arrow.stream"
SQL = "x'; DROP TABLE user_stats; --"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_root(tmp_path_factory.mktemp("hostile"))
    outside = tmp_path_factory.mktemp("outside")
    pa.parquet.write_table(pa.table({"user_id": [1]}), outside / "secret.parquet")
    os.symlink(outside / "secret.parquet", root / "link.parquet")
    return root


@pytest.fixture(scope="module")
def client(root: Path):  # noqa: ANN201
    with make_client(root) as c:
        yield c


def rows(**over: list) -> dict:
    return {**USER_STATS, **over}


def missing(name: str) -> dict:
    return {k: v for k, v in USER_STATS.items() if k != name}


ENTS = {"user_id": [1], "event_timestamp": ["2025-02-01T00:00:00Z"]}
CASES = [
    # (method, path, kwargs, expected status, text the message must contain)
    ("post", "/get-online-features", {"content": b"{nope"}, 422, "not valid JSON"),
    ("post", "/get-online-features", {"content": b"[" * 5000 + b"]" * 5000}, 422, "JSON"),
    ("post", "/get-online-features", {"content": b"\xff\xfe"}, 422, "JSON"),
    (
        "post",
        "/get-online-features",
        {"json": {"entities": {"user_id": [1]}, "features": [SQL]}},
        422,
        "view:feature",
    ),
    (
        "post",
        "/get-online-features",
        {"json": {"entities": {"user_id": [1]}, "features": ["user_stats:" + SQL]}},
        404,
        "DROP",
    ),
    (
        "post",
        "/get-online-features",
        {"json": {"entities": {"user_id": [1]}, "features": [SQL + ":ctr"]}},
        404,
        "DROP",
    ),
    (
        "post",
        "/get-online-features",
        {"json": {"entities": {"user_id": [{"a": 1}]}, "features": ["user_stats:ctr"]}},
        422,
        "row 0",
    ),
    (
        "post",
        "/get-online-features",
        {
            "json": {
                "entities": {"user_id": [1] * 3, "item_id": ["a"]},
                "features": ["user_item:clicks"],
            }
        },
        422,
        "unequal",
    ),
    (
        "post",
        "/write-to-online-store",
        {"json": {"feature_view_name": "user_stats", "df": rows(visits=["x", 1, 2])}},
        422,
        "visits",
    ),
    (
        "post",
        "/write-to-online-store",
        {"json": {"feature_view_name": "user_stats", "df": rows(user_id=[1, None, 3])}},
        422,
        "user_id",
    ),
    (
        "post",
        "/write-to-online-store",
        {
            "json": {
                "feature_view_name": "user_stats",
                "df": rows(event_timestamp=["yesterday"] * 3),
            }
        },
        422,
        "event_timestamp",
    ),
    (
        "post",
        "/write-to-online-store",
        {"json": {"feature_view_name": "user_stats", "df": missing("ctr")}},
        422,
        "ctr",
    ),
    (
        "post",
        "/write-to-online-store",
        {"json": {"feature_view_name": "user_stats", "df": rows(extra=[1, 2, 3])}},
        422,
        "extra",
    ),
    (
        "post",
        "/write-to-online-store",
        {"json": {"feature_view_name": "user_stats", "df": rows(emb=[[1.0], [1.0], [1.0]])}},
        422,
        "emb",
    ),
    (
        "post",
        "/write-to-online-store",
        {"json": {"feature_view_name": "user_stats", "df": rows(ctr=[0.1])}},
        422,
        "unequal",
    ),
    (
        "post",
        "/write-to-online-store",
        {"json": {"feature_view_name": SQL, "df": rows()}},
        404,
        "DROP",
    ),
    (
        "post",
        "/write-to-online-store",
        {"json": {"feature_view_name": 5, "df": rows()}},
        422,
        "feature_view_name",
    ),
    (
        "post",
        "/push",
        {"json": {"push_source_name": "user_stats_push", "df": "all of it"}},
        422,
        "df",
    ),
    ("post", "/v1/ingest/user_stats", {"json": rows(visits=[1.5, 2, 3])}, 422, "visits"),
    ("post", "/v1/ingest/user_stats", {"json": [1, 2]}, 422, "row 0"),
    (
        "post",
        "/v1/ingest/user_stats",
        {"content": b"not arrow", "headers": {"Content-Type": ARROW}},
        422,
        "Arrow",
    ),
    (
        "post",
        "/v1/ingest/user_stats",
        {"content": arrow_ipc(pa.table({"user_id": [1]})), "headers": {"Content-Type": ARROW}},
        422,
        "missing",
    ),
    (
        "post",
        "/v1/ingest/user_stats",
        {"content": b"a,b\n1,2", "headers": {"Content-Type": "text/csv"}},
        415,
        "Content-Type",
    ),
    ("post", "/v1/ingest/nope", {"json": rows()}, 404, "nope"),
    ("post", "/v1/ingest/" + "x%27%3B%20DROP%20TABLE%20t", {"json": rows()}, 404, "DROP"),
    ("post", "/v1/ingest/..%2F..%2Fetc", {"json": rows()}, 404, ""),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities_path": "../../../etc/passwd", "features": ["user_stats:ctr"]}},
        422,
        "outside the store root",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities_path": "/etc/passwd", "features": ["user_stats:ctr"]}},
        422,
        "outside the store root",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities_path": "link.parquet", "features": ["user_stats:ctr"]}},
        422,
        "outside the store root",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities_path": "registry.json", "features": ["user_stats:ctr"]}},
        422,
        "parquet",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities_path": "none.parquet", "features": ["user_stats:ctr"]}},
        404,
        "no such file",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": ENTS, "features": ["user_stats:ctr"], "out": "../../evil.parquet"}},
        422,
        "plain file name",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": ENTS, "features": ["user_stats:ctr"], "out": "/tmp/evil.parquet"}},
        422,
        "plain file name",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": ENTS, "features": ["user_stats:ctr) UNION SELECT 1 --"]}},
        404,
        "UNION",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": ENTS, "features": [SQL + ":ctr"]}},
        404,
        "DROP",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": {"user_id": [1]}, "features": ["user_stats:ctr"]}},
        422,
        "event_timestamp",
    ),
    (
        "post",
        "/v1/training-export",
        {
            "json": {
                "entities": {"user_id": [1], "event_timestamp": ["soon"]},
                "features": ["user_stats:ctr"],
            }
        },
        422,
        "event_timestamp",
    ),
    (
        "post",
        "/v1/training-export",
        {
            "json": {
                "entities": {"item_id": ["a"], "event_timestamp": ["2025-01-01"]},
                "features": ["user_stats:ctr"],
            }
        },
        422,
        "user_id",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": ENTS, "features": ["user_stats:ctr"], "as_of_seq": -1}},
        422,
        "as_of_seq",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": ENTS, "features": ["user_stats:ctr"], "as_of_seq": 10**9}},
        422,
        "ahead",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": ENTS, "feature_service": SQL}},
        404,
        "DROP",
    ),
    ("post", "/v1/training-export", {"json": {"entities": ENTS}}, 422, "features"),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": ENTS, "entities_path": "x.parquet", "features": ["user_stats:ctr"]}},
        422,
        "exactly one",
    ),
    (
        "post",
        "/v1/training-export?features=user_stats:ctr",
        {"content": b"junk", "headers": {"Content-Type": ARROW}},
        422,
        "Arrow",
    ),
    ("put", "/v1/definitions", {"json": [1, 2]}, 422, "object"),
    (
        "put",
        "/v1/definitions",
        {"content": b"a: [", "headers": {"Content-Type": "application/yaml"}},
        422,
        "YAML",
    ),
    (
        "put",
        "/v1/definitions",
        {"json": {"entities": [{"name": SQL, "join_keys": ["k"], "dtype": "int64"}]}},
        422,
        "invalid name",
    ),
    ("put", "/v1/definitions", {"json": {"tables": []}}, 422, "tables"),
    ("get", "/v1/feature-views/" + "x%27%3B%20DROP", {}, 404, "DROP"),
    ("get", "/nope", {}, 404, ""),
    ("delete", "/v1/definitions", {}, 405, ""),
]


@pytest.mark.parametrize(
    "method, path, kwargs, status, fragment",
    CASES,
    ids=[f"{c[0]} {c[1][:40]} {i}" for i, c in enumerate(CASES)],
)
def test_hostile_request_is_4xx_and_writes_nothing(
    client: TestClient, root: Path, method: str, path: str, kwargs: dict, status: int, fragment: str
) -> None:
    exports = root / "exports"
    before_files = sorted(exports.iterdir()) if exports.exists() else []
    before = last_seq(client)
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    if isinstance(body, str):  # Feast endpoints: double-encoded
        body = json.loads(body)
        message = body["message"]
    else:
        message = body["error"]["message"]
    assert fragment in message
    assert last_seq(client) == before
    assert (sorted(exports.iterdir()) if exports.exists() else []) == before_files


def test_server_still_answers_after_the_hostile_batch(client: TestClient) -> None:
    r = client.post(
        "/get-online-features",
        json={"entities": {"user_id": [1]}, "features": ["user_stats:visits"]},
    )
    assert r.status_code == 200 and r.json()["results"][1]["values"] == [10]
    assert all(v["mismatches"] == 0 for v in client.post("/v1/audit").json().values())


def test_body_limit_is_413_declared_or_streamed(tmp_path: Path) -> None:
    with make_client(make_root(tmp_path), max_body_bytes=2000) as c:
        seq = last_seq(c)
        big = {"entities": {"user_id": list(range(1000))}, "features": ["user_stats:ctr"]}
        r = c.post("/get-online-features", json=big)
        assert (
            r.status_code == 413 and "RICKHOUSE_MAX_BODY_BYTES" in json.loads(r.json())["message"]
        )

        def chunks():  # noqa: ANN202 -- no Content-Length: counted while it streams
            for _ in range(100):
                yield b" " * 100

        r = c.post(
            "/v1/ingest/user_stats", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["error"]["type"] == "PayloadTooLarge"
        small = {"entities": {"user_id": [1]}, "features": ["user_stats:visits"]}
        assert c.post("/get-online-features", json=small).status_code == 200
        assert last_seq(c) == seq


def test_bearer_token_guards_everything_but_health(tmp_path: Path) -> None:
    with make_client(make_root(tmp_path), api_token="s3cret") as c:
        assert c.get("/health").status_code == 200
        body = {"entities": {"user_id": [1]}, "features": ["user_stats:visits"]}
        r = c.post("/get-online-features", json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert json.loads(r.json())["class"] == "FeastPermissionError"
        r = c.get("/v1/stats", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "Unauthorized"
        for path in ("/metrics", "/openapi.json", "/v1/definitions"):
            assert c.get(path).status_code == 401, path
        ok = {"Authorization": "Bearer s3cret"}
        assert c.post("/get-online-features", json=body, headers=ok).status_code == 200
        assert c.get("/v1/stats", headers=ok).status_code == 200


def test_a_locked_root_serves_503_with_the_reason(client: TestClient, root: Path) -> None:
    """`client` holds the writer lock of `root`: a second server on it must not serve stale or
    corrupt data; it answers 503 everywhere (health included) and says why."""
    with make_client(root) as second:
        health = second.get("/health")
        assert health.status_code == 503
        assert str(root) in json.loads(health.json())["message"]
        r = second.get("/v1/stats")
        assert r.status_code == 503 and r.json()["error"]["type"] == "Unavailable"
        r = second.post(
            "/get-online-features",
            json={"entities": {"user_id": [1]}, "features": ["user_stats:ctr"]},
        )
        assert r.status_code == 503
    assert client.get("/health").status_code == 200
