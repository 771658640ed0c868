"""The router as a real process over real nodes: equivalence with one root, failover,
read-your-writes, validation errors.

P=4 partitions; nodes a (0-1), b (2-3) and a2 (a replica of 0-1). The oracle is one
single-root FeatureStore fed the same batches with plain `ingest`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from app.feast_json import feast_json
from cluster.broker import TestBroker
from store import FeatureStore
from tests.cluster._nodes import DEFS, ITEMS, USERS, batch, write_config
from tests.cluster._router import running

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
P = 4
NODES = [("a", "0-1"), ("b", "2-3"), ("a2", "0-1")]
SERVICE_DEFS = {
    **DEFS,
    "feature_services": [{"name": "both", "features": ["user_stats:x", "item_stats:price"]}],
}


def _requests() -> list[dict[str, Any]]:
    users = list(range(USERS)) + [10_000]  # never written: NOT_FOUND
    items = [f"i{k}" for k in range(ITEMS)] + ["nope"]
    return [
        {"features": ["user_stats:x", "user_stats:s"], "entities": {"user_id": users}},
        {"features": ["item_stats:price"], "entities": {"item_id": items}},
        {"features": ["user_stats:x"], "entities": {"user_id": [3]}},
        {
            "feature_service": "both",
            "entities": {"user_id": users[:81], "item_id": items},
            "full_feature_names": True,
        },
    ]


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _oracle(tmp: Path, batches: int) -> list[Any]:
    fs = FeatureStore(tmp / "oracle")
    try:
        fs.apply(SERVICE_DEFS)
        for i in range(batches):
            fs.ingest(*batch(i))
        out = []
        for r in _requests():
            feats = r.get("feature_service") or r["features"]
            res = fs.get_online_features(
                feats, r["entities"], full_feature_names=r.get("full_feature_names", False)
            )
            out.append(
                orjson.loads(orjson.dumps(feast_json(res), option=orjson.OPT_SERIALIZE_NUMPY))
            )
        return out
    finally:
        fs.close()


def test_router_answers_as_one_root_and_survives_a_replica_kill(
    broker: TestBroker, topic: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "cluster.yaml", broker.bootstrap_servers, topic, P, NODES)
    batches = 12
    expected = _oracle(tmp_path, batches)
    with running(config, tmp_path, [n for n, _ in NODES]) as (router, nodes):
        r = router.put("/v1/definitions", json=SERVICE_DEFS)
        assert r.status_code == 200, r.text
        for i in range(batches):
            view, table = batch(i)
            as_json = view == "user_stats" and i % 2 == 0  # JSON has no NaN: Arrow for prices
            body = (
                orjson.dumps(table.to_pylist(), default=lambda t: t.isoformat())
                if as_json
                else _ipc(table)
            )
            kind = "application/json" if as_json else "application/vnd.apache.arrow.stream"
            r = router.post(f"/v1/ingest/{view}", content=body, headers={"content-type": kind})
            assert r.status_code == 200, r.text
            assert r.json()["rows"] == table.num_rows and r.json()["position"]
        # read-your-writes through this router: no waiting by the test
        for req, want in zip(_requests(), expected, strict=True):
            got = router.post("/get-online-features", json=req)
            assert got.status_code == 200, got.text
            assert got.json() == want, req

        # a refused batch: the single root's 422 naming the column, nothing written
        bad = {
            "user_id": [1, 2],
            "event_timestamp": ["2025-01-01T00:00:00Z"] * 2,
            "x": ["a", 1],
            "s": ["p", "q"],
        }
        r = router.post("/v1/ingest/user_stats", json=bad)
        assert r.status_code == 422 and "'x'" in r.text, r.text
        assert router.post("/v1/ingest/nope", json=bad).status_code == 404

        # failover: kill a replica of partitions 0-1 under a read load, 0 failures
        failures: list[str] = []
        done = threading.Event()
        count = [0]

        def load() -> None:
            reqs = _requests()
            while not done.is_set():
                for req, want in zip(reqs, expected, strict=True):
                    got = router.post("/get-online-features", json=req)
                    count[0] += 1
                    if got.status_code != 200 or got.json() != want:
                        failures.append(f"{got.status_code} {got.text[:200]}")

        t = threading.Thread(target=load)
        t.start()
        time.sleep(1.0)
        nodes["a"].kill()
        time.sleep(2.0)
        done.set()
        t.join(60)
        assert not failures, failures[:3]
        assert count[0] > 8
        stats = router.get("/v1/stats").json()
        assert stats["nodes"]["a"]["alive"] is False
        assert "rickhouse_cluster_partition_lag" in router.get("/metrics").text
