"""All-or-nothing batches through the router on a broker that delivers aborted records.

The router is SIGKILLed while it produces a batch spanning every partition; a new router (same
transactional.id) aborts the open transaction, which the Tansu test broker then delivers to
read_committed readers. Nodes stage a batch until its one commit record in the commits topic
(cluster/commits.py, cluster/staging.py); the new router's session record makes the killed batch
dead, so nothing of it becomes visible; the next batches are applied whole.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
import yaml

from cluster.broker import TestBroker, free_port
from cluster.consumer import ConsumerOptions, PartitionConsumer
from cluster.partitioning import partition_of
from tests.cluster._nodes import DEFS, T0, TS, NodeProcess, write_config
from tests.cluster._router import RouterProcess

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
P = 4
ARROW = {"content-type": "application/vnd.apache.arrow.stream"}


def _users(first: int, n: int, x: int) -> bytes:
    table = pa.table(
        {
            "user_id": pa.array(np.arange(first, first + n), pa.int64()),
            "event_timestamp": pa.array(np.full(n, T0), TS),
            "x": pa.array(np.full(n, x), pa.int64()),
            "s": pa.array(["v"] * n),
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _found(router: RouterProcess, users: list[int]) -> list[bool]:
    r = router.post(
        "/get-online-features", json={"features": ["user_stats:x"], "entities": {"user_id": users}}
    )
    assert r.status_code == 200, r.text
    return [s == "PRESENT" for s in r.json()["results"][1]["statuses"]]


def test_batch_of_a_killed_router_is_all_or_nothing(
    broker: TestBroker, topic: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "cluster.yaml", broker.bootstrap_servers, topic, P, [("a", "0-3")]
    )
    node = NodeProcess(config, "a", tmp_path / "a.log")
    router = RouterProcess(config, tmp_path / "router.log")
    big = 2_000_000  # long to produce: the kill lands mid-transaction
    try:
        node.start()
        router.start()
        assert router.put("/v1/definitions", json=DEFS).status_code == 200
        r = router.post("/v1/ingest/user_stats", content=_users(0, 1000, 1), headers=ARROW)
        assert r.status_code == 200, r.text
        before = {int(p): off for p, off in r.json()["position"].items()}

        # a refused batch leaves nothing
        bad = {"user_id": [5_000_000], "event_timestamp": [None], "x": [1], "s": ["v"]}
        assert router.post("/v1/ingest/user_stats", json=bad).status_code == 422

        answers: list[int] = []

        def send() -> None:
            try:
                body = _users(100_000, big, 2)
                answers.append(
                    httpx.post(
                        f"{router.url}/v1/ingest/user_stats", content=body, headers=ARROW,
                        timeout=60,
                    ).status_code
                )  # fmt: skip
            except httpx.HTTPError:
                answers.append(-1)

        raw = PartitionConsumer(
            broker.bootstrap_servers,
            topic,
            {p: off + 1 for p, off in before.items()},
            ConsumerOptions(read_committed=False),
        )
        t = threading.Thread(target=send)
        t.start()
        deadline = time.monotonic() + 60
        while not raw.poll(0.05):  # the first record of the big batch reached the broker
            assert time.monotonic() < deadline, "the big batch never reached the broker"
        router.kill()
        raw.close()
        t.join(60)
        assert answers == [-1]  # the client got no acknowledgement

        router = RouterProcess(config, tmp_path / "router2.log")
        router.start()  # same transactional.id: aborts the killed router's transaction
        r = router.post("/v1/ingest/user_stats", content=_users(2000, 1000, 3), headers=ARROW)
        assert r.status_code == 200, r.text
        sample = list(range(100_000, 100_000 + big, big // 500))
        found = _found(router, sample)
        # all or nothing; nothing unless the commit beat the kill (the client got no answer)
        assert not any(found) or all(found), f"{sum(found)} of {len(found)} rows visible"
        if not any(found):  # the broker delivered the aborted records: the node dropped them
            assert "dropped aborted batch" in (tmp_path / "a.log").read_text()
        assert all(_found(router, [*range(0, 1000, 7), *range(2000, 3000, 7)]))  # both whole

        # read-your-writes across routers: a second router reads at the first one's position
        other_cfg = yaml.safe_load(config.read_text())
        other_cfg["router"]["url"] = f"http://127.0.0.1:{free_port()}"
        (tmp_path / "other.yaml").write_text(yaml.safe_dump(other_cfg))
        other = RouterProcess(tmp_path / "other.yaml", tmp_path / "other.log")
        try:
            other.start()
            r = router.post("/v1/ingest/user_stats", content=_users(9000, 50, 4), headers=ARROW)
            position = r.json()["position"]
            read = {"features": ["user_stats:x"], "entities": {"user_id": [9000, 9049]}}
            got = other.post("/get-online-features", json={**read, "min_position": position})
            assert got.status_code == 200 and got.json()["results"][1]["values"] == [4, 4]
            part = partition_of("9000", P)  # a partition this read touches
            far = {str(part): 10**9}
            t0 = time.monotonic()
            got = other.post("/get-online-features", json={**read, "min_position": far})
            assert got.status_code == 503 and f"partition {part}" in got.text, got.text
            assert time.monotonic() - t0 < 20
        finally:
            other.stop()
    finally:
        router.stop()
        node.stop()
