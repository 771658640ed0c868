"""A node SIGKILLed again and again while batches stream in through the router, with a replica.

P=4; nodes a (0-1), b (2-3) and a2 (a replica of 0-1). One client sends batches to the router
without pause while node a is killed and restarted KILLS times. Then: every acknowledged batch
reads back through the router as from one root fed the same batches, every tablet audits 0,
each partition holds each acknowledged row once, and a and a2 hold the same commit log.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pytest

from app.feast_json import feast_json
from cluster.broker import TestBroker
from cluster.tablets import tablet_root
from store import FeatureStore
from store.commitlog import CommitLog
from tests.cluster._nodes import DEFS, ITEMS, USERS, NodeProcess, batch, data_slices, write_config
from tests.cluster._router import RouterProcess

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
P = 4
NODES = [("a", "0-1"), ("b", "2-3"), ("a2", "0-1")]
OWNED = {"a": (0, 1), "b": (2, 3), "a2": (0, 1)}
KILLS = 4
MAX_BATCHES = 400  # bounds the stream if the kills take long
ARROW = {"content-type": "application/vnd.apache.arrow.stream"}


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _requests() -> list[dict[str, Any]]:
    return [
        {"features": ["user_stats:x", "user_stats:s"], "entities": {"user_id": list(range(USERS))}},
        {
            "features": ["item_stats:price"],
            "entities": {"item_id": [f"i{k}" for k in range(ITEMS)]},
        },
    ]


def _tablet(root: Path) -> tuple[int, list[tuple[int, str]]]:
    """(offline rows, each (_seq, _row) once; commit-log (seq, view) list) of a stopped tablet,
    asserting its audit is 0."""
    fs = FeatureStore(root)
    try:
        rows = 0
        for storage in fs._snap.storage.values():  # a test may look inside: (_seq, _row) pairs
            t = fs._off.scan(storage, columns=["_seq", "_row"]).read_all()
            pairs = set(zip(t["_seq"].to_pylist(), t["_row"].to_pylist(), strict=True))
            assert len(pairs) == t.num_rows, f"{root}: a row was applied twice"
            rows += t.num_rows
        assert all(v["mismatches"] == 0 for v in fs.audit().values()), root
    finally:
        fs.close()
    log = CommitLog(root / "commitlog")
    entries = [(r.seq, r.view) for r in log.recover()]
    log.close()
    return rows, entries


def test_node_sigkilled_during_router_ingests_loses_and_repeats_nothing(
    broker: TestBroker, topic: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "cluster.yaml", broker.bootstrap_servers, topic, P, NODES)
    acked: list[int] = []
    position: dict[int, int] = {}
    failures: list[str] = []
    stop, done = threading.Event(), threading.Event()

    nodes = {n: NodeProcess(config, n, tmp_path / f"{n}.log") for n, _ in NODES}
    router = RouterProcess(config, tmp_path / "router.log")
    try:
        errors: list[BaseException] = []
        started = threading.Semaphore(0)

        def start(x: NodeProcess | RouterProcess) -> None:
            try:
                x.start(150)
            except BaseException as e:  # reported by the test's thread
                errors.append(e)
            started.release()
            done.wait()  # a child is killed when the thread that spawned it ends

        starts = [threading.Thread(target=start, args=(x,)) for x in [*nodes.values(), router]]
        for t in starts:  # in parallel: start-up is most of this test's time
            t.start()
        for _ in starts:
            assert started.acquire(timeout=160)
        assert not errors, errors
        assert router.put("/v1/definitions", json=DEFS).status_code == 200

        def feed() -> None:
            with httpx.Client(timeout=60) as client:
                for i in range(MAX_BATCHES):
                    if stop.is_set():
                        return
                    view, table = batch(i)
                    r = client.post(
                        f"{router.url}/v1/ingest/{view}", content=_ipc(table), headers=ARROW
                    )
                    if r.status_code != 200:
                        failures.append(f"batch {i}: {r.status_code} {r.text[:200]}")
                        return
                    acked.append(i)
                    for p, off in r.json()["position"].items():
                        position[int(p)] = max(position.get(int(p), -1), off)

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            rng = random.Random(11)
            for _ in range(KILLS):
                time.sleep(rng.uniform(0.3, 1.2))
                nodes["a"].kill()
                nodes["a"].start(150)
        finally:
            stop.set()
            feeder.join(60)
        assert not failures, failures
        assert len(acked) > KILLS, "the stream barely ran"
        for name, node in nodes.items():
            node.wait_applied({p: o for p, o in position.items() if p in OWNED[name]}, 60)

        oracle = FeatureStore(tmp_path / "oracle")
        try:
            oracle.apply(DEFS)
            for i in acked:
                oracle.ingest(*batch(i))
            for req in _requests():
                got = router.post("/get-online-features", json=req)
                assert got.status_code == 200, got.text
                res = oracle.get_online_features(req["features"], req["entities"])
                want = orjson.loads(
                    orjson.dumps(feast_json(res), option=orjson.OPT_SERIALIZE_NUMPY)
                )
                assert got.json() == want, req["features"]
        finally:
            oracle.close()
        for node in nodes.values():
            state = node.get("/v1/positions")["partitions"]
            assert all(s["refused"] == 0 and s["failed"] is None for s in state.values())
    finally:
        router.stop()
        for node in nodes.values():
            node.stop()
        done.set()

    expected = dict.fromkeys(range(P), 0)
    for i in acked:
        for s in data_slices(*batch(i), P):
            expected[s.partition] += s.payload.num_rows  # type: ignore[union-attr]
    logs: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for name, parts in OWNED.items():
        for p in parts:
            rows, logs[name, p] = _tablet(tablet_root(tmp_path / "data" / name, p))
            assert rows == expected[p], (name, p)  # nothing lost, nothing applied twice
    for p in OWNED["a"]:
        assert logs["a", p] == logs["a2", p], p  # replicas: the same records at the same seqs
