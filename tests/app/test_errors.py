"""app/errors.py: store errors become HTTP answers in one place; a damaged file of the served
store is a 5xx whose JSON body names the file and what to do, never a traceback.

sstables and manifests are checked when the store opens (their CRCs, their JSON): the server then
stays up and answers 503 everywhere, /health included, naming the file. A Parquet file is read
by each export: damaged while the server runs, the export answers 500 naming it, and online reads
go on being served.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from app.errors import store_error_status
from store import errors as store_errors
from tests.app.conftest import make_client, make_root

ONLINE = {"entities": {"user_id": [1]}, "features": ["user_stats:ctr"]}
EXPORT = {
    "entities": {"user_id": [1], "event_timestamp": ["2025-02-01T00:00:00Z"]},
    "features": ["user_stats:ctr"],
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A store with every view flushed: one sstable per view, Parquet files offline."""
    from store import FeatureStore

    root = make_root(tmp_path / "store")
    with FeatureStore(root) as fs:
        fs.flush()
    return root


def garble(path: Path, at: int, n: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(b"\xa5" * n)


def feast_message(r) -> str:  # noqa: ANN001
    """The message of a Feast-shaped error body (a JSON string holding a JSON object)."""
    return orjson.loads(r.json())["message"]


def assert_unavailable_naming(c: TestClient, damaged: Path) -> None:
    r = c.get("/health")
    assert r.status_code == 503 and str(damaged) in feast_message(r), r.text
    r = c.post("/get-online-features", json=ONLINE)
    assert r.status_code == 503, r.text
    message = feast_message(r)
    assert str(damaged) in message and "Restore" in message and "Traceback" not in message
    for method, path, body in (
        ("post", "/v1/training-export", EXPORT),
        ("post", "/v1/ingest/user_stats", {"user_id": [1]}),
        ("get", "/v1/stats", None),
    ):
        r = c.request(method, path, json=body)
        assert r.status_code == 503, (path, r.text)
        assert r.json()["error"]["type"] == "Unavailable" and str(damaged) in r.text


def test_a_damaged_sstable_answers_503_naming_the_file(root: Path) -> None:
    sst = next((root / "online" / "user_stats").glob("*.sst"))
    garble(sst, sst.stat().st_size // 2, 64)
    with make_client(root) as c:
        assert_unavailable_naming(c, sst)
        metrics = c.get("/metrics")
        assert metrics.status_code == 200 and "rickhouse_up 0.0" in metrics.text


def test_a_damaged_manifest_answers_503_naming_the_file(root: Path) -> None:
    manifest = root / "online" / "user_stats" / "MANIFEST"
    garble(manifest, manifest.stat().st_size // 2, 20)
    with make_client(root) as c:
        assert_unavailable_naming(c, manifest)


def test_a_damaged_parquet_file_answers_500_naming_the_file(root: Path) -> None:
    with make_client(root) as c:
        assert c.post("/v1/training-export", json=EXPORT).status_code == 200
        damaged = next((root / "offline" / "user_stats").rglob("*.parquet"))
        os.truncate(damaged, damaged.stat().st_size // 2)
        r = c.post("/v1/training-export", json=EXPORT)
        assert r.status_code == 500 and r.headers["content-type"] == "application/json", r.text
        error = r.json()["error"]
        assert error["type"] == "CorruptionError"
        assert str(damaged) in error["message"] and "Restore" in error["message"]
        assert "Traceback" not in r.text
        # the online side is not affected
        r = c.post("/get-online-features", json=ONLINE)
        assert r.status_code == 200 and r.json()["results"][1]["values"] == [0.25]
        assert not list((root / "exports").glob(".stream-*"))


@pytest.mark.parametrize(
    "error, status",
    [
        (store_errors.UnknownViewError("v"), 404),
        (store_errors.UnknownFeatureError("v:f"), 404),
        (store_errors.EntityKeyError("bad key"), 422),
        (store_errors.DefinitionError("bad definitions"), 422),
        (store_errors.ConflictError("overtaken"), 409),
        (store_errors.WriterLockedError("locked"), 503),
        (store_errors.ClosedError("closed"), 503),
        (store_errors.CorruptionError("damaged /x", path="/x"), 500),
        (store_errors.EngineError("online store: failed"), 500),
        (store_errors.StoreError("anything else"), 500),
    ],
)
def test_every_store_error_kind_has_its_status(error: store_errors.StoreError, status: int) -> None:
    assert store_error_status(error)[0] == status
