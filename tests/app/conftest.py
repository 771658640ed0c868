"""Fixtures for the server tests: a small store root with known rows, and clients of the app.

The data is tiny and fixed (whole-second timestamps) so that every expected value below is
written out by hand: the oracle is the rows we ingested.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from tests.definitions import definitions, view

DEFS = definitions(
    view(
        "user_stats",
        ["user"],
        {
            "ctr": "float32",
            "country": "string",
            "visits": "int64",
            "premium": "bool",
            "emb": "float32[3]",
            "seen": "timestamp",
        },
        ttl=0,
    ),
    view("user_item", ["user", "item"], {"clicks": "int32", "score": "float64"}, ttl=0),
    view("stale", ["user"], {"old": "float64"}, ttl="1h"),
    services={"ranking_v1": ["user_stats:ctr", "user_item:clicks"]},
    pushes={"user_stats_push": "user_stats"},
)

USER_STATS = {
    "user_id": [1, 2, 3],
    "event_timestamp": ["2025-01-30T12:00:03Z", "2025-01-30T12:00:04Z", "2025-01-29T00:00:00Z"],
    "ctr": [0.25, 0.5, None],
    "country": ["NL", "US", None],
    "visits": [10, 20, 30],
    "premium": [True, False, True],
    "emb": [[1.0, 2.0, 3.0], [0.5, 0.25, 0.125], None],
    "seen": ["2025-01-30T11:00:00Z", "2025-01-30T11:30:00Z", "2025-01-28T00:00:00Z"],
}
USER_ITEM = {
    "user_id": [1, 1, 2],
    "item_id": ["a", "b", "a"],
    "event_timestamp": ["2025-01-30T00:00:00Z"] * 3,
    "clicks": [3, 4, 5],
    "score": [0.1, 0.2, 0.3],
}
STALE = {"user_id": [1], "event_timestamp": ["2020-01-01T00:00:00Z"], "old": [1.5]}


def make_root(root: Path) -> Path:
    """A store at `root` with DEFS applied and the rows above ingested (3 batches)."""
    from store import FeatureStore

    with FeatureStore(root) as fs:
        fs.apply(DEFS)
        fs.ingest("user_stats", USER_STATS)
        fs.ingest("user_item", USER_ITEM)
        fs.ingest("stale", STALE)
    return root


@pytest.fixture(scope="module")
def module_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("store"))


def make_client(root: Path, **settings: object) -> TestClient:
    from app.server import create_app
    from app.settings import Settings

    return TestClient(create_app(Settings.from_env({}, root=root, **settings)))


@pytest.fixture(scope="module")
def client(module_root: Path) -> Iterator[TestClient]:
    """One server app over the module's store (lifespan runs: the app opens the store)."""
    with make_client(module_root) as c:
        yield c


def arrow_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def last_seq(client: TestClient) -> int:
    r = client.get("/v1/stats")
    assert r.status_code == 200, r.text
    return r.json()["last_seq"]
