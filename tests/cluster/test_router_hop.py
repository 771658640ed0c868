"""The read hot path of a router and its nodes as real processes: one-entity reads forwarded to
one tablet (`route_by=@<p>`), and every semantic the fast paths keep: 421 for a partition the
node does not serve, 503 naming a partition behind `min_position`, bad parameters refused,
4xx passed through, metrics.

P=4; nodes a (0-1) and b (2-3).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.errors import BadRequestError
from cluster.broker import TestBroker
from cluster.partitioning import partition_of
from tests.cluster._nodes import DEFS, write_config
from tests.cluster._router import running

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]
P = 4
BAD = BadRequestError.status  # a request refused whole
FEATURES = ["user_stats:x", "user_stats:s"]


def test_one_entity_reads_and_the_fast_paths_semantics(
    broker: TestBroker, topic: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "cluster.yaml", broker.bootstrap_servers, topic, P, [("a", "0-1"), ("b", "2-3")]
    )
    with running(config, tmp_path, ["a", "b"]) as (router, nodes):
        assert router.put("/v1/definitions", json=DEFS).status_code == 200
        users = list(range(40))
        rows = {
            "user_id": users,
            "event_timestamp": ["2025-01-01T00:00:00Z"] * len(users),
            "x": [u * 10 for u in users],
            "s": [f"s{u}" for u in users],
        }
        r = router.post("/v1/ingest/user_stats", json=rows)
        assert r.status_code == 200, r.text
        position = r.json()["position"]

        # one entity through the router = the owning node's own answer = a 40-entity read's row
        whole = router.post("/get-online-features", json={"features": FEATURES,
                            "entities": {"user_id": users}}).json()  # fmt: skip
        for u in users:
            req = {"features": FEATURES, "entities": {"user_id": [u]}}
            got = router.post("/get-online-features", json=req)
            assert got.status_code == 200, got.text
            owner = nodes["a" if partition_of(str(u), P) < 2 else "b"]
            assert got.json() == owner.post("/get-online-features", req).json()
            assert [c["values"][0] for c in got.json()["results"]] == [
                c["values"][u] for c in whole["results"]
            ]
        req = {"features": FEATURES, "entities": {"user_id": ["7"]}, "full_feature_names": True}
        assert router.post("/get-online-features", json=req).json()["results"][1]["values"] == [70]

        # the node's fast path: pinned reads, 421, 503 naming the partition, refusals
        a = nodes["a"].url
        u = next(u for u in users if partition_of(str(u), P) == 1)
        req = {"features": FEATURES, "entities": {"user_id": [u]}}
        pinned = httpx.post(f"{a}/get-online-features?route_by=@1", json=req)
        assert (
            pinned.status_code == 200
            and pinned.json() == nodes["a"].post("/get-online-features", req).json()
        )
        stray = httpx.post(f"{a}/get-online-features?route_by=@2", json=req)
        assert stray.status_code == 421 and "partition(s) [2]" in stray.text, stray.text
        ahead = f'{{"1": {position["1"] + 1000}}}'
        late = httpx.post(
            f"{a}/get-online-features", params={"min_position": ahead, "wait_ms": "50"}, json=req
        )
        assert late.status_code == 503 and "partition 1 of node a" in late.text, late.text
        bad = httpx.post(
            f"{a}/get-online-features", params={"min_position": ahead, "wait_ms": "x"}, json=req
        )
        assert bad.status_code == BAD and "wait_ms" in bad.text, bad.text
        bad = httpx.post(f"{a}/get-online-features", params={"min_position": "[1]"}, json=req)
        assert bad.status_code == BAD and "min_position" in bad.text, bad.text
        caught_up = f'{{"1": {position["1"]}}}'
        ok = httpx.post(f"{a}/get-online-features", params={"min_position": caught_up}, json=req)
        assert ok.status_code == 200, ok.text

        # the router's fast path: errors as FastAPI's handlers give them, 503 from the node
        r = router.post("/get-online-features", json={**req, "min_position": [1]})
        assert r.status_code == BAD and "min_position" in r.text, r.text
        r = router.post("/get-online-features", json={"features": FEATURES})
        assert r.status_code == BAD and "entities" in r.text, r.text
        r = router.post("/get-online-features", content=b"{not json")
        assert r.status_code in (400, BAD), r.text
        r = router.post("/get-online-features", json={**req, "features": ["nope:x"]})
        assert r.status_code == 404 and "nope" in r.text, r.text
        r = router.post("/get-online-features", json={**req, "min_position": {"1": 10**9}})
        assert r.status_code == 503 and "partition 1" in r.text, r.text
        r = router.post("/get-online-features", json={**req, "min_position": {"1": 0}})
        assert r.status_code == 200, r.text
        metrics = router.get("/metrics").text
        assert 'endpoint="/get-online-features"' in metrics and 'status="503"' in metrics
