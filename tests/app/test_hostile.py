"""Hostile input: every malformed or wrong request is a 4xx naming the problem, never a 5xx,
and nothing is written (the last seq and the exports directory stay as they were)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import DEFS, USER_STATS, arrow_ipc, last_seq, make_client, make_root

ARROW = "application/vnd.apache.arrow.stream"
SQL = "x'; DROP TABLE user_stats; --"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_root(tmp_path_factory.mktemp("hostile"))
    outside = tmp_path_factory.mktemp("outside")
    pa.parquet.write_table(pa.table({"user_id": [1]}), outside / "secret.parquet")
    os.symlink(outside / "secret.parquet", root / "link.parquet")
    (root / "junk.parquet").write_bytes(b"PAR1 not parquet PAR1")
    pq.write_table(pa.table({"user_id": [1]}), root / "nots.parquet")
    ts = pa.array([None], pa.timestamp("ns", "UTC"))
    pq.write_table(pa.table({"user_id": [1], "event_timestamp": ts}), root / "nullts.parquet")
    return root


@pytest.fixture(scope="module")
def client(root: Path):  # noqa: ANN201
    with make_client(root) as c:
        yield c


def rows(**over: list) -> dict:
    return {**USER_STATS, **over}


def missing(name: str) -> dict:
    return {k: v for k, v in USER_STATS.items() if k != name}


def arrow_rows(**over: pa.Array) -> pa.Table:
    """One valid user_stats row as Arrow, with some columns replaced."""
    cols = {
        "user_id": pa.array([7], pa.int64()),
        "event_timestamp": pa.array([0], pa.timestamp("s", "UTC")),
        "ctr": pa.array([0.5], pa.float32()),
        "country": pa.array(["x"]),
        "visits": pa.array([1]),
        "premium": pa.array([True]),
        "emb": pa.array([[1.0, 2.0, 3.0]], pa.list_(pa.float32(), 3)),
        "seen": pa.array([0], pa.timestamp("s", "UTC")),
    }
    return pa.table({**cols, **over})


def not_utf8() -> pa.Array:
    """A string array whose one value is not UTF-8: IPC reading does not check string data."""
    offsets = pa.py_buffer(np.array([0, 2], np.int32))
    return pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(b"\xff\xfe")])


def arrow_with_repeated_column() -> bytes:
    t = arrow_rows()
    return arrow_ipc(pa.Table.from_arrays([*t.columns, pa.array([5])], [*t.column_names, "visits"]))


ENTS = {"user_id": [1], "event_timestamp": ["2025-02-01T00:00:00Z"]}
ENT_ROWS = pa.table({"user_id": [1], "event_timestamp": pa.array([0], pa.timestamp("s"))})
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
    # --- found by fuzzing: each of these was a 500 (or wrote something) before
    # ints >= 2**63 (orjson reads them as ints) and mixed vectors escaped convert_batch
    (
        "post",
        "/write-to-online-store",
        {"json": {"feature_view_name": "user_stats", "df": rows(visits=[2**63, 1, 2])}},
        422,
        "user_stats",
    ),
    ("post", "/v1/ingest/user_stats", {"json": rows(event_timestamp=[2**63, 1, 2])}, 422, ""),
    ("post", "/v1/ingest/user_stats", {"json": rows(ctr=[2**63, 1, 2])}, 422, "user_stats"),
    (
        "post",
        "/v1/ingest/user_stats",
        {"json": rows(emb=[[1, 2, 3], [1, 2, "x"], None])},
        422,
        "user_stats",
    ),
    # a null inside a vector: online read it as 0.0, offline kept null (audit mismatch)
    (
        "post",
        "/push",
        {"json": {"push_source_name": "user_stats_push", "df": rows(emb=[[1.0, None, 3.0]] * 3)}},
        422,
        "null element",
    ),
    # Arrow bodies: rows after the first stream were silently dropped; a repeated column
    # silently lost one of its copies; a field name that is not UTF-8 was a 500
    (
        "post",
        "/v1/ingest/user_stats",
        {"content": arrow_ipc(arrow_rows()) * 2, "headers": {"Content-Type": ARROW}},
        422,
        "after the end",
    ),
    (
        "post",
        "/v1/ingest/user_stats",
        {"content": arrow_with_repeated_column(), "headers": {"Content-Type": ARROW}},
        422,
        "repeats column 'visits'",
    ),
    (
        "post",
        "/v1/ingest/user_stats",
        {
            "content": arrow_ipc(arrow_rows(zq=pa.array([1]))).replace(b"zq", b"\xff\xfe"),
            "headers": {"Content-Type": ARROW},
        },
        422,
        "Arrow",
    ),
    # training export
    (
        "post",
        "/v1/training-export",
        {"json": {"entities_path": "a" * 5000 + ".parquet", "features": ["user_stats:ctr"]}},
        422,
        "not a usable path",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities_path": "junk.parquet", "features": ["user_stats:ctr"]}},
        422,
        "not a readable Parquet file",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities_path": "nots.parquet", "features": ["user_stats:ctr"]}},
        422,
        "event_timestamp",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities_path": "nullts.parquet", "features": ["user_stats:ctr"]}},
        422,
        "null",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": ENTS, "features": ["user_stats:ctr"], "as_of_seq": "\u00b2"}},
        422,
        "as_of_seq",
    ),
    (
        "post",
        "/v1/training-export?features=user_stats:ctr&as_of_seq=" + "9" * 5000,
        {"content": arrow_ipc(ENT_ROWS), "headers": {"Content-Type": ARROW}},
        422,
        "as_of_seq",
    ),
    (
        "post",
        "/v1/training-export",
        {
            "json": {
                "entities": {**ENTS, "event_timestamp": ["0001-01-01"]},
                "features": ["user_stats:ctr"],
            }
        },
        422,
        "1677",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": {**ENTS, "ctr": [1.0]}, "features": ["user_stats:ctr"]}},
        422,
        "collides",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": {**ENTS, "": [1]}, "features": ["user_stats:ctr"]}},
        422,
        "empty name",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": {**ENTS, "label": [2**63]}, "features": ["user_stats:ctr"]}},
        422,
        "label",
    ),
    (
        "post",
        "/v1/training-export?features=user_stats:ctr",
        {
            "content": arrow_ipc(
                pa.Table.from_arrays(
                    [*ENT_ROWS.columns, pa.array([2])], [*ENT_ROWS.column_names, "user_id"]
                )
            ),
            "headers": {"Content-Type": ARROW},
        },
        422,
        "repeats column 'user_id'",
    ),
    (
        "post",
        "/v1/training-export?features=user_stats:ctr",
        {
            "content": arrow_ipc(pa.table({"user_id": [1], "event_timestamp": ["2025-01-01"]})),
            "headers": {"Content-Type": ARROW},
        },
        422,
        "must be a timestamp",
    ),
    (  # "$" let a trailing newline into the exports directory
        "post",
        "/v1/training-export",
        {"json": {"entities": ENTS, "features": ["user_stats:ctr"], "out": "x.parquet\n"}},
        422,
        "plain file name",
    ),
    (
        "post",
        "/v1/training-export",
        {"json": {"entities": ENTS, "feature_service": ""}},
        422,
        "got an empty string",
    ),
    # definitions: YAML keys of mixed types, unhashable names
    (
        "put",
        "/v1/definitions",
        {"content": b"{1: a, b: c}", "headers": {"Content-Type": "application/yaml"}},
        422,
        "unknown section(s) [1, 'b']",
    ),
    (
        "put",
        "/v1/definitions",
        {
            "json": {
                **DEFS,
                "feature_views": [
                    *DEFS["feature_views"],
                    {
                        "name": "v2",
                        "entities": [["user"]],
                        "features": [{"name": "f", "dtype": "int64"}],
                    },
                ],
            }
        },
        422,
        "unknown entity",
    ),
    (
        "put",
        "/v1/definitions",
        {"json": {**DEFS, "push_sources": [{"name": "p2", "feature_view": ["user_stats"]}]}},
        422,
        "unknown feature view",
    ),
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
        for scheme in ("bearer", "BEARER"):  # the scheme is case-insensitive (RFC 7235)
            assert (
                c.get("/v1/stats", headers={"Authorization": f"{scheme} s3cret"}).status_code == 200
            )
        for given in ("Basic s3cret", "Bearers3cret", "bearer  s3cret", "s3cret"):
            assert c.get("/v1/stats", headers={"Authorization": given}).status_code == 401, given


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


def test_arrow_strings_that_are_not_utf8_never_reach_the_commit_log(tmp_path: Path) -> None:
    """IPC reading does not check string data: a non-UTF-8 string used to be logged and applied,
    then every online read of that entity failed (or, with the current online engine, the apply
    failed the store, and every reopen failed replaying it)."""
    root = make_root(tmp_path)
    body = arrow_ipc(arrow_rows(country=not_utf8()))
    with make_client(root) as c:
        seq = last_seq(c)
        r = c.post("/v1/ingest/user_stats", content=body, headers={"Content-Type": ARROW})
        assert r.status_code == 422, r.text
        assert "'country'" in r.json()["error"]["message"]
        r = c.post(
            "/v1/training-export?features=user_stats:ctr",
            content=arrow_ipc(ENT_ROWS.append_column("label", not_utf8())),
            headers={"Content-Type": ARROW},
        )
        assert r.status_code == 422 and "'label'" in r.json()["error"]["message"], r.text
        assert last_seq(c) == seq
        r = c.post(
            "/v1/ingest/user_stats",
            content=arrow_ipc(arrow_rows()),
            headers={"Content-Type": ARROW},
        )
        assert r.status_code == 200, r.text
        assert all(v["mismatches"] == 0 for v in c.post("/v1/audit").json().values())
    with make_client(root) as c:  # the store reopens
        assert c.get("/health").status_code == 200
        assert last_seq(c) == seq + 1


def test_store_refuses_invalid_arrow_data_from_python_too(tmp_path: Path) -> None:
    from store import FeatureStore
    from store.errors import ValidationError

    with FeatureStore(make_root(tmp_path)) as fs:
        seq = fs.last_seq
        with pytest.raises(ValidationError, match="'country'"):
            fs.ingest("user_stats", arrow_rows(country=not_utf8()))
        assert fs.last_seq == seq


def with_view(**view: object) -> dict:
    base = {"name": "v2", "entities": ["user"], "features": [{"name": "f", "dtype": "int64"}]}
    return {**DEFS, "feature_views": [*DEFS["feature_views"], {**base, **view}]}


BRICKING_DEFINITIONS = [
    # a name too long for a directory: the registry was saved, then the online tree could not
    # be created (500), and the store could never be opened again
    (with_view(name="v" * 300), "at most 128"),
    # "$" let a trailing newline in; the offline store refused the name after the registry
    # was saved: same outcome
    (with_view(name="v2\n"), "invalid name"),
    (with_view(features=[{"name": "f\n", "dtype": "int64"}]), "invalid name"),
    (with_view(features=[{"name": "f", "dtype": "float32[3]\n"}]), "unsupported dtype"),
    # a ttl beyond int64 nanoseconds was accepted, then every export of the view was a 500
    (with_view(ttl=2**63 - 1), "too long"),  # seconds
    (with_view(ttl="99999999999999999999d"), "too long"),
]


@pytest.mark.parametrize("definitions, fragment", BRICKING_DEFINITIONS)
def test_definitions_that_would_break_the_store_are_refused(
    tmp_path: Path, definitions: dict, fragment: str
) -> None:
    root = make_root(tmp_path)
    with make_client(root) as c:
        before = c.get("/v1/definitions").json()
        r = c.put("/v1/definitions", json=definitions)
        assert r.status_code == 422, r.text
        assert fragment in r.json()["error"]["message"]
        assert c.get("/v1/definitions").json() == before
        body = {"entities": ENTS, "features": ["user_stats:ctr"], "output": "stream"}
        assert c.post("/v1/training-export", json=body).status_code == 200
    with make_client(root) as c:  # the store reopens
        assert c.get("/health").status_code == 200


def test_an_ingest_overtaken_by_an_apply_is_a_409_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An apply that redefines a view while an ingest into it is being converted: the ingest
    was a 500 (a bare StoreError); it is a conflict the client resolves by sending it again.
    Fuzzed with ingests racing ttl changes, 1268 of 1353 ingests hit it."""
    import store.feature_store as feature_store

    root = make_root(tmp_path)
    with make_client(root) as c:
        fs = c.app.state.service.store
        convert = feature_store.convert_batch

        ttls = iter(["1d", "2d"])

        def convert_then_redefine(fv: object, data: object) -> object:
            out = convert(fv, data)
            user_stats = {**DEFS["feature_views"][0], "ttl": next(ttls)}
            # lands between validation and the ingest lock
            fs.apply({**DEFS, "feature_views": [user_stats, *DEFS["feature_views"][1:]]})
            return out

        monkeypatch.setattr(feature_store, "convert_batch", convert_then_redefine)
        seq = last_seq(c)
        r = c.post("/v1/ingest/user_stats", json=USER_STATS)
        assert r.status_code == 409, r.text
        assert "send it again" in r.json()["error"]["message"]
        r = c.post(
            "/write-to-online-store", json={"feature_view_name": "user_stats", "df": USER_STATS}
        )
        assert r.status_code == 409 and json.loads(r.json())["class"] == "FeastError", r.text
        monkeypatch.undo()
        assert last_seq(c) == seq
        assert c.post("/v1/ingest/user_stats", json=USER_STATS).status_code == 200
        assert all(v["mismatches"] == 0 for v in c.post("/v1/audit").json().values())


def _statuses(client: TestClient, status: int) -> int:
    """How many requests /metrics counts with `status`."""
    lines = client.get("/metrics").text.splitlines()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in lines
        if line.startswith("rickhouse_http_requests_total") and f'status="{status}"' in line
    )


def test_a_client_gone_before_its_body_arrived_is_not_a_server_error(client: TestClient) -> None:
    """A client that disconnects mid-body: the fast path counted it as a 500 in /metrics, the
    other endpoints raised ClientDisconnect out of the app (a logged 'Exception in ASGI
    application' and a 500). Now a 499 (client closed request) everywhere; nothing written."""

    async def call(path: str) -> list[dict]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        await client.app(scope, receive, send)
        return sent

    seq, errors = last_seq(client), _statuses(client, 500)
    for path in ("/get-online-features", "/v1/ingest/user_stats", "/write-to-online-store"):
        sent = client.portal.call(call, path)
        assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [499], path
    assert _statuses(client, 500) == errors
    assert _statuses(client, 499) >= 3
    assert last_seq(client) == seq


def test_concurrent_exports_to_one_name_get_one_200_and_one_409(
    client: TestClient, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 409 for an existing `out` was a check-then-write: exports racing to one name all
    answered 200 and wrote the same file over each other (fuzzed: 4 of 4 got 200)."""
    import threading

    fs = client.app.state.service.store
    export = fs.export_training
    inside, release = threading.Event(), threading.Event()

    def slow_export(*args: object, **kwargs: object) -> object:
        inside.set()
        release.wait(5)
        return export(*args, **kwargs)

    monkeypatch.setattr(fs, "export_training", slow_export)
    body = {"entities": ENTS, "features": ["user_stats:ctr"], "out": "raced.parquet"}
    first: list = []
    t = threading.Thread(target=lambda: first.append(client.post("/v1/training-export", json=body)))
    t.start()
    assert inside.wait(5)
    second = client.post("/v1/training-export", json=body)
    release.set()
    t.join(10)
    assert (first[0].status_code, second.status_code) == (200, 409), (first[0].text, second.text)
    assert "already exists" in second.json()["error"]["message"]
    assert pq.read_table(root / "exports" / "raced.parquet").num_rows == 1


def yaml_bomb(levels: int) -> bytes:
    """A few hundred bytes of YAML whose aliases stand for 10**levels strings."""
    parts = ["&l0 [x, x, x, x, x, x, x, x, x, x]"]
    parts += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return ("entities:\n  - name: [" + ", ".join(parts) + "]\n    join_keys: [k]\n").encode()


@pytest.mark.parametrize("body", [yaml_bomb(6), b"entities: &a [*a, *a]\n"], ids=["bomb", "cycle"])
def test_yaml_aliases_cannot_expand_into_a_hang(client: TestClient, body: bytes) -> None:
    """Aliases share one object among many places: a 524-byte body with 9 levels stood for
    10**9 strings, and the message naming the bad name printed them all (the server held the
    GIL at 100% CPU and 4 GB RSS, growing, /health unanswered). 6 levels here: before, a 422
    whose message was 5 MB."""
    before = client.get("/v1/definitions").json()
    r = client.put("/v1/definitions", content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422, r.text[:300]
    assert len(r.content) < 2000
    assert "expands to more than" in r.json()["error"]["message"]
    assert client.get("/v1/definitions").json() == before


def compressed_ipc(table: pa.Table, codec: str = "zstd") -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=codec)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_a_compressed_arrow_body_is_limited_by_what_it_decodes_to(tmp_path: Path) -> None:
    """IPC buffers may be ZSTD/LZ4 compressed: 25 KB decoded to 800 MB (2.5 MB would have
    been 80 GB: the process killed for memory) while the body limit saw 25 KB. What a stream
    decodes to now counts against RICKHOUSE_MAX_BODY_BYTES, read from its headers before
    anything is decoded."""
    zeros = pa.table({"user_id": pa.array(np.zeros(1_000_000, np.int64))})
    bomb = compressed_ipc(zeros)
    assert len(bomb) < 2000
    with make_client(make_root(tmp_path), max_body_bytes=1_000_000) as c:
        seq = last_seq(c)
        for path in ("/v1/ingest/user_stats", "/v1/training-export?features=user_stats:ctr"):
            r = c.post(path, content=bomb, headers={"Content-Type": ARROW})
            assert r.status_code == 413, r.text
            assert "decodes to more than 1000000 bytes" in r.json()["error"]["message"]
        for codec in ("zstd", "lz4"):  # compressed and small enough: accepted
            body = compressed_ipc(arrow_rows(), codec)
            r = c.post("/v1/ingest/user_stats", content=body, headers={"Content-Type": ARROW})
            assert r.status_code == 200, r.text
        assert last_seq(c) == seq + 2


def test_damaged_arrow_bodies_are_4xx_and_write_nothing(client: TestClient) -> None:
    """Bytes flipped at random (fixed seed) in plain and compressed streams: the fuzzing that
    found the invalid-UTF-8 and compression cases above. Every answer is a 2xx or a 4xx, and
    whatever is accepted leaves the two stores agreeing."""
    import random

    rng = random.Random(20261130)
    bodies = [arrow_ipc(arrow_rows()), compressed_ipc(arrow_rows(), "zstd")]
    statuses = set()
    for i in range(150):
        body = bytearray(bodies[i % 2])
        for _ in range(rng.randint(1, 6)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        r = client.post(
            "/v1/ingest/user_stats", content=bytes(body), headers={"Content-Type": ARROW}
        )
        statuses.add(r.status_code)
        assert r.status_code < 500, r.text
    assert 422 in statuses
    assert all(v["mismatches"] == 0 for v in client.post("/v1/audit").json().values())


def test_a_dictionary_column_is_limited_by_what_it_expands_to(tmp_path: Path) -> None:
    """A dictionary-encoded string column is small on the wire and in memory, and the store
    casts it to plain strings: 3000 indices to one 1 MB value made Arrow allocate 2 GB for
    4 s before giving up (a ~1 MB body). Its expansion now counts against the body limit."""
    indices = pa.array(np.zeros(1000, np.int32))
    country = pa.DictionaryArray.from_arrays(indices, pa.array(["x" * 10_000]))
    body = arrow_ipc(pa.table({"country": country}))
    assert len(body) < 20_000
    with make_client(make_root(tmp_path), max_body_bytes=1_000_000) as c:
        r = c.post("/v1/ingest/user_stats", content=body, headers={"Content-Type": ARROW})
        assert r.status_code == 413, r.text
        assert "dictionary-encoded" in r.json()["error"]["message"]
        small = pa.array(["NL"]).dictionary_encode()
        r = c.post(
            "/v1/ingest/user_stats",
            content=arrow_ipc(arrow_rows(country=small)),
            headers={"Content-Type": ARROW},
        )
        assert r.status_code == 200, r.text


def test_definitions_with_more_views_than_a_store_serves_are_refused(tmp_path: Path) -> None:
    """Each view is an online tree with threads and open files, opened under the ingest lock:
    one PUT of 2000 views held ingests for 158 s and left 4000 threads and 2000 descriptors;
    20000 would have run out of descriptors after the registry was saved (a store that never
    opens again). At most MAX_FEATURE_VIEWS, refused before anything is opened."""
    from store.registry import MAX_FEATURE_VIEWS

    extra = [
        {"name": f"v{i}", "entities": ["user"], "features": [{"name": "f", "dtype": "int64"}]}
        for i in range(MAX_FEATURE_VIEWS)
    ]
    with make_client(make_root(tmp_path)) as c:
        before = c.get("/v1/definitions").json()
        r = c.put(
            "/v1/definitions", json={**DEFS, "feature_views": [*DEFS["feature_views"], *extra]}
        )
        assert r.status_code == 422, r.text[:300]
        assert f"at most {MAX_FEATURE_VIEWS}" in r.json()["error"]["message"]
        assert c.get("/v1/definitions").json() == before


def test_a_view_whose_online_row_is_too_wide_is_refused(tmp_path: Path) -> None:
    """20000 float32[65536] features: the online engine could not lay the record out
    (numpy: integer won't fit into a C int), a 500 after the registry was saved, and the
    store never opened again."""
    from store.registry import MAX_ROW_BYTES

    wide = [{"name": f"f{i}", "dtype": "float32[65536]"} for i in range(20_000)]
    with make_client(make_root(tmp_path)) as c:
        before = c.get("/v1/definitions").json()
        r = c.put("/v1/definitions", json=with_view(features=wide))
        assert r.status_code == 422, r.text[:300]
        assert f"at most {MAX_ROW_BYTES}" in r.json()["error"]["message"]
        assert c.get("/v1/definitions").json() == before
        fits = [{"name": f"f{i}", "dtype": "float32[65536]"} for i in range(4)]
        assert c.put("/v1/definitions", json=with_view(features=fits)).status_code == 200
    with make_client(tmp_path) as c:  # the store reopens
        assert c.get("/health").status_code == 200


def test_an_apply_whose_new_tree_cannot_be_created_saves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """apply saved the registry, then opened the trees of new views: any failure there (the
    name and width cases above, or a file system or thread limit) left a registry naming a
    view without a tree, and the store did not open again. New views' trees are now opened
    first; a failure refuses the apply whole."""
    root = make_root(tmp_path)
    with make_client(root) as c:
        fs = c.app.state.service.store
        before = c.get("/v1/definitions").json()
        open_tree = fs._open_tree

        def failing_open_tree(view: object) -> object:
            if getattr(view, "name", None) == "v2":
                raise OSError(28, "No space left on device")
            return open_tree(view)

        monkeypatch.setattr(fs, "_open_tree", failing_open_tree)
        with pytest.raises(OSError, match="No space"):  # a server fault: 500
            c.put("/v1/definitions", json=with_view())
        monkeypatch.undo()
        assert c.get("/v1/definitions").json() == before
        assert c.post("/v1/ingest/user_stats", json=USER_STATS).status_code == 200
    with make_client(root) as c:  # reopens with the definitions it had
        assert c.get("/v1/definitions").json() == before
        assert c.put("/v1/definitions", json=with_view()).status_code == 200
