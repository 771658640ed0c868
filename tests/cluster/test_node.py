"""Cluster nodes as real processes: exactly-once apply across SIGKILLs, replicas, definitions.

Each test starts node processes against the module's Tansu broker and stops them in `finally`.
The oracle is one single-root FeatureStore fed the same batches with plain `ingest`.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.feast_json import feast_json
from cluster.broker import TestBroker
from cluster.producer import TransactionalProducer
from cluster.tablets import tablet_root
from store import FeatureStore
from store.commitlog import CommitLog
from tests.cluster._nodes import (
    DEFS,
    ITEMS,
    USERS,
    NodeProcess,
    batch,
    data_slices,
    definitions_slices,
    produce,
    with_feature,
    write_config,
)

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
P = 4
USER_FEATURES = ["user_stats:x", "user_stats:s"]
ITEM_FEATURES = ["item_stats:price"]


def _requests(user_features: list[str]) -> list[dict[str, Any]]:
    users = list(range(USERS)) + [10_000, 10_001]  # two never written: NOT_FOUND
    items = [f"i{k}" for k in range(ITEMS)] + ["nope"]
    return [
        {"features": user_features, "entities": {"user_id": users}},
        {"features": ITEM_FEATURES, "entities": {"item_id": items}},
        {"features": user_features, "entities": {"user_id": [3]}},
    ]


def _oracle_answers(oracle: FeatureStore, requests: list[dict[str, Any]]) -> list[Any]:
    out = []
    for r in requests:
        res = oracle.get_online_features(r["features"], r["entities"])
        out.append(orjson.loads(orjson.dumps(feast_json(res), option=orjson.OPT_SERIALIZE_NUMPY)))
    return out


def _node_answers(node: NodeProcess, requests: list[dict[str, Any]]) -> list[Any]:
    out = []
    for r in requests:
        resp = node.post("/get-online-features", r)
        assert resp.status_code == 200, resp.text
        out.append(resp.json())
    return out


def _tablet_facts(root: Path) -> tuple[int, int, list[tuple[int, str]]]:
    """(offline rows, audit mismatches, commit-log (seq, view) list) of a stopped tablet."""
    fs = FeatureStore(root)
    try:
        rows = 0
        for storage in fs._snap.storage.values():  # a test may look inside: (_seq, _row) pairs
            t = fs._off.scan(storage, columns=["_seq", "_row"]).read_all()
            pairs = set(zip(t["_seq"].to_pylist(), t["_row"].to_pylist(), strict=True))
            assert len(pairs) == t.num_rows, f"{root}: a row was applied twice"
            rows += t.num_rows
        mismatches = sum(v["mismatches"] for v in fs.audit().values())
    finally:
        fs.close()
    log = CommitLog(root / "commitlog")
    entries = [(r.seq, r.view) for r in log.recover()]
    log.close()
    return rows, mismatches, entries


def test_sigkilled_node_applies_every_batch_exactly_once(
    broker: TestBroker, topic: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "cluster.yaml", broker.bootstrap_servers, topic, P, [("a", "0-3")]
    )
    node = NodeProcess(config, "a", tmp_path / "node-a.log")
    oracle = FeatureStore(tmp_path / "oracle")
    oracle.apply(DEFS)
    producer = TransactionalProducer(broker.bootstrap_servers, topic, "feed-exactly-once")
    last: dict[int, int] = {}
    produce(producer, definitions_slices(DEFS, P), last)
    batches = [batch(i) for i in range(90)]
    total_rows = sum(t.num_rows for _, t in batches)
    failure: list[BaseException] = []

    def feed() -> None:
        try:
            for view, table in batches:
                produce(producer, data_slices(view, table, P), last)
                time.sleep(0.03)
        except BaseException as e:  # reported by the main thread
            failure.append(e)

    rng = random.Random(7)
    feeder = threading.Thread(target=feed)
    try:
        node.start()
        feeder.start()
        for _ in range(4):
            time.sleep(rng.uniform(0.2, 1.5))
            node.kill()
            node.start()
        feeder.join(120)
        assert not failure, failure
        node.wait_applied(last)
        for view, table in batches:
            oracle.ingest(view, table)
        requests = _requests(USER_FEATURES)
        assert _node_answers(node, requests) == _oracle_answers(oracle, requests)
        state = node.get("/v1/positions")["partitions"]
        assert all(s["refused"] == 0 and s["failed"] is None for s in state.values())
    finally:
        feeder.join(120)
        node.stop()
        oracle.close()
    rows = 0
    for p in range(P):
        r, mismatches, _ = _tablet_facts(tablet_root(tmp_path / "data" / "a", p))
        assert mismatches == 0
        rows += r
    assert rows == total_rows  # nothing lost, nothing applied twice


def test_replicas_reach_identical_state_with_definitions_at_the_same_point(
    broker: TestBroker, topic: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "cluster.yaml",
        broker.bootstrap_servers,
        topic,
        P,
        [("a", "0-3"), ("a2", "0-3")],
    )
    nodes = [NodeProcess(config, n, tmp_path / f"node-{n}.log") for n in ("a", "a2")]
    producer = TransactionalProducer(broker.bootstrap_servers, topic, "feed-replicas")
    last: dict[int, int] = {}
    newer = with_feature(DEFS, "user_stats", {"name": "tag", "dtype": "string"})
    produce(producer, definitions_slices(DEFS, P), last)
    try:
        nodes[0].start()
        for i in range(12):
            produce(producer, data_slices(*batch(i), P), last)
        nodes[1].start()  # the replica starts late and catches up
        produce(producer, definitions_slices(newer, P), last)  # a definitions change mid-stream
        for i in range(12, 24):
            view, table = batch(i, extra="tag")
            if view == "item_stats":
                table = batch(i)[1]
            produce(producer, data_slices(view, table, P), last)
        nodes[0].kill()  # a crash of one replica does not matter either
        nodes[0].start()
        for n in nodes:
            n.wait_applied(last)
        requests = _requests([*USER_FEATURES, "user_stats:tag"])
        a, a2 = (_node_answers(n, requests) for n in nodes)
        assert a == a2
        tags = a[0]["results"][3]["values"]
        assert any(t is not None for t in tags) and None in tags
        status = CliRunner().invoke(cli, ["cluster", "status", str(config), "--json"])
        assert status.exit_code == 0, status.output
        for n in orjson.loads(status.stdout)["nodes"]:
            assert n["alive"] and n["broker"]["connected"] is not False
            assert {int(p): s["applied_offset"] for p, s in n["partitions"].items()} == last
    finally:
        for n in nodes:
            n.stop()
    for p in range(P):
        ra, ma, la = _tablet_facts(tablet_root(tmp_path / "data" / "a", p))
        rb, mb, lb = _tablet_facts(tablet_root(tmp_path / "data" / "a2", p))
        assert ma == mb == 0 and ra == rb
        assert la == lb  # the same records at the same seqs: definitions at the same point
        assert [v for _, v in la].count("~position") == 2
