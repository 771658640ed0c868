"""Training exports of computed features through the router on Ray (cluster/export_computed.py,
the aggregation reads of cluster/ray_tasks.py), against a single root fed the same events.

One Tansu broker, one 4-partition cluster (nodes a: 0-1, b: 2-3), one router running a local
Ray (2 CPUs) for the whole module. Views: an aggregation view by user (sums, counts, means, max,
stddev, last over 1h/1d/7d; events late, at random times, nulls) and one by merchant (a string
key, a 5m hop), a plain view by user and one by merchant (another routing key), on-demand
views over them with a request field taken from the entity rows. Every export must equal the
root's `export_training` row for row, value for value, null for null.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cluster.broker import TestBroker
from cluster.topic import ensure_topic
from store import FeatureStore
from tests.cluster._nodes import NodeProcess, write_config
from tests.cluster._router import RouterProcess
from tests.cluster.test_cluster_export import _ray_leftovers, ipc, same

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

T0 = 1_735_689_600 * 10**9  # 2025-01-01
S = 10**9
HOUR = 3600 * S
TS = pa.timestamp("ns", "UTC")
ARROW = "application/vnd.apache.arrow.stream"
USERS = 120
MERCHANTS = [f"m{k}" for k in range(15)]
DEFS: dict[str, Any] = {
    "entities": [
        {"name": "user", "join_keys": ["user_id"], "dtype": "int64"},
        {"name": "merchant", "join_keys": ["merchant_id"], "dtype": "string"},
    ],
    "feature_views": [
        {
            "name": "user_txn",
            "entities": ["user"],
            "events": [
                {"name": "amount", "dtype": "float64"},
                {"name": "merchant", "dtype": "string"},
            ],
            "aggregations": [
                {"column": "amount", "function": "sum", "windows": ["1h", "1d", "7d"]},
                {"column": "amount", "function": "count", "windows": ["1d", "7d"]},
                {"column": "amount", "function": "mean", "windows": ["7d"]},
                {"column": "amount", "function": "max", "windows": ["1d"]},
                {"column": "amount", "function": "stddev", "windows": ["7d"]},
                {"column": "merchant", "function": "last", "windows": ["7d"]},
            ],
        },
        {
            "name": "user_profile",
            "entities": ["user"],
            "features": [{"name": "age", "dtype": "int64"}],
        },
        {
            "name": "merchant_info",
            "entities": ["merchant"],
            "features": [{"name": "risk", "dtype": "float64"}],
        },
        {
            "name": "merchant_txn",
            "entities": ["merchant"],
            "hop": "5m",
            "events": [{"name": "amount", "dtype": "float64"}],
            "aggregations": [
                {"column": "amount", "function": "count", "windows": ["1h"]},
                {"column": "amount", "function": "min", "windows": ["1d"]},
            ],
        },
    ],  # fmt: skip
    "on_demand_views": [
        {
            "name": "profile_risk",
            "sources": ["user_profile", "merchant_info"],
            "request": [{"name": "amount", "dtype": "float64"}],
            "features": [
                {"name": "minor", "dtype": "bool", "expr": "coalesce(age, 0) < 18"},
                {
                    "name": "merchant_risk",
                    "dtype": "float64",
                    "expr": "coalesce(risk, 0.5) * amount",
                },
                {"name": "doubled", "dtype": "float64", "expr": "amount * 2"},
            ],
        },
        {
            "name": "txn_risk",
            "sources": ["user_txn", "user_profile"],
            "request": [{"name": "amount", "dtype": "float64"}],
            "features": [
                {
                    "name": "amount_vs_week",
                    "dtype": "float64",
                    "expr": "amount / nullif(amount_mean_7d, 0)",
                },
                {
                    "name": "big_spender",
                    "dtype": "bool",
                    "expr": "amount_sum_1d > 1000 or coalesce(age, 0) < 18",
                },
            ],
        },
    ],  # fmt: skip
}
AGGREGATES = [
    f"user_txn:{a}"
    for a in ("amount_sum_1h amount_sum_1d amount_sum_7d amount_count_1d amount_count_7d "
              "amount_mean_7d amount_max_1d amount_stddev_7d merchant_last_7d").split()
]  # fmt: skip


def batches() -> list[tuple[str, pa.Table]]:
    """Events over 3 days in random order (late arrivals), times on whole minutes (ties with
    each other and with the entity rows' window edges), null amounts; profiles and merchants."""
    rng = np.random.default_rng(11)
    out: list[tuple[str, pa.Table]] = []
    for _ in range(8):
        n = 500
        amount = rng.random(n) * 600
        out.append(("user_txn", pa.table({
            "user_id": pa.array(rng.integers(0, USERS, n), pa.int64()),
            "event_timestamp": pa.array(T0 + rng.integers(0, 72 * 60, n) * 60 * S, TS),
            "amount": pa.array(amount, mask=rng.random(n) < 0.05),
            "merchant": [MERCHANTS[k] for k in rng.integers(0, len(MERCHANTS), n)],
        })))  # fmt: skip
        out.append(("merchant_txn", pa.table({
            "merchant_id": [MERCHANTS[k] for k in rng.integers(0, len(MERCHANTS) - 2, n)],
            "event_timestamp": pa.array(T0 + rng.integers(0, 72 * 60, n) * 60 * S, TS),
            "amount": pa.array(rng.random(n), mask=rng.random(n) < 0.05),
        })))  # fmt: skip
    users = list(range(0, USERS, 2))  # odd users have no profile
    out.append(("user_profile", pa.table({
        "user_id": pa.array(users, pa.int64()),
        "event_timestamp": pa.array([T0 + 5 * HOUR] * len(users), TS),
        "age": pa.array([10 + u % 50 for u in users], mask=[u % 10 == 4 for u in users]),
    })))  # fmt: skip
    known = MERCHANTS[:-3]  # three merchants unknown
    out.append(("merchant_info", pa.table({
        "merchant_id": known,
        "event_timestamp": pa.array([T0 + 10 * HOUR] * len(known), TS),
        "risk": pa.array([k / 10 for k in range(len(known))], mask=[k == 2 for k in range(len(known))]),
    })))  # fmt: skip
    return out


def entity_rows(n: int = 2000, seed: int = 5) -> pa.Table:
    rng = np.random.default_rng(seed)
    amount = rng.random(n) * 900
    return pa.table({
        "user_id": pa.array(rng.integers(0, USERS + 10, n), pa.int64()),
        "merchant_id": [MERCHANTS[k] for k in rng.integers(0, len(MERCHANTS), n)],
        "event_timestamp": pa.array(T0 + rng.integers(0, 80 * 60, n) * 60 * S, TS),
        "amount": pa.array(amount, mask=rng.random(n) < 0.05),
        "label": pa.array(rng.random(n)),
    })  # fmt: skip


class Cluster:
    def __init__(self, tmp: Path, router: RouterProcess, root: FeatureStore) -> None:
        self.tmp, self.router, self.root = tmp, router, root
        self.tasks = 0  # the last file export's Ray tasks

    def export(self, body: dict[str, Any] | None = None, **kw: Any) -> Any:
        if body is not None:
            kw["json"] = body
        return self.router.client.post(f"{self.router.url}/v1/training-export", timeout=120, **kw)

    def file_export(self, ents: pa.Table, features: list[str]) -> pa.Table:
        name = f"ents-{time.monotonic_ns()}.parquet"
        pq.write_table(ents, Path(os.environ["RICKHOUSE_ROUTER_ROOT"]) / name)
        r = self.export({"entities_path": name, "features": features})
        assert r.status_code == 200, r.text
        self.tasks = r.json()["tasks"]
        return pq.read_table(r.json()["path"])

    def root_export(self, ents: pa.Table, features: list[str]) -> pa.Table:
        out = self.tmp / f"root-{time.monotonic_ns()}.parquet"
        self.root.export_training(ents, features, str(out))
        return pq.read_table(out)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster-export-computed")
    env = {"RICKHOUSE_ROUTER_ROOT": str(tmp / "router"), "RICKHOUSE_RAY_CPUS": "2"}
    (tmp / "router").mkdir()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the router (and its Ray workers) inherit them
    nodes: list[NodeProcess] = []
    router: RouterProcess | None = None
    root = FeatureStore(tmp / "root")
    try:
        with TestBroker(tmp / "tansu.log") as broker:
            ensure_topic(broker.bootstrap_servers, "computed", 4)
            config = write_config(
                tmp / "cluster.yaml", broker.bootstrap_servers, "computed", 4,
                [("a", "0-1"), ("b", "2-3")],
            )  # fmt: skip
            nodes = [NodeProcess(config, n, tmp / f"{n}.log") for n in ("a", "b")]
            for n in nodes:
                n.start()
            router = RouterProcess(config, tmp / "router.log")
            router.start()
            r = router.put("/v1/definitions", json=DEFS)
            assert r.status_code == 200, r.text
            root.apply(DEFS)
            for view, table in batches():
                r = router.post(
                    f"/v1/ingest/{view}", content=ipc(table), headers={"content-type": ARROW}
                )
                assert r.status_code == 200, r.text
                root.ingest(view, table)
            yield Cluster(tmp, router, root)
    finally:
        root.close()
        if router is not None:
            router.stop()
        for n in nodes:
            n.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    leftovers = _ray_leftovers(env["RICKHOUSE_ROUTER_ROOT"])
    assert not leftovers, f"the stopped router left Ray processes running: {leftovers}"


def test_on_demand_equals_single_root_file_and_arrow(cluster: Cluster) -> None:
    ents = entity_rows()
    feats = ["merchant_info:risk", "profile_risk:merchant_risk", "user_profile:age",
             "profile_risk:minor"]  # fmt: skip
    want = cluster.root_export(ents, feats)
    assert want.column_names[-4:] == ["risk", "age", "merchant_risk", "minor"]
    assert 0 < want.column("merchant_risk").null_count < want.num_rows  # null request values
    same(cluster.file_export(ents, feats), want)
    assert cluster.tasks == 8  # 4 partitions of the user group, 4 of the merchant group
    r = cluster.export(content=ipc(ents), params={"features": feats},
                       headers={"content-type": ARROW, "accept": ARROW})  # fmt: skip
    assert r.status_code == 200, r.text
    same(pa.ipc.open_stream(r.content).read_all(), want)


def test_request_fields_only(cluster: Cluster) -> None:
    ents = entity_rows(300, seed=9)
    feats = ["profile_risk:doubled"]
    same(cluster.file_export(ents, feats), cluster.root_export(ents, feats))
    assert cluster.tasks == 0  # nothing to join: the router computes it


def test_aggregates_equal_single_root(cluster: Cluster) -> None:
    ents = entity_rows(seed=6)
    feats = ["merchant_info:risk", *AGGREGATES[:4], "merchant_txn:amount_count_1h",
             "user_profile:age", *AGGREGATES[4:], "merchant_txn:amount_min_1d"]  # fmt: skip
    want = cluster.root_export(ents, feats)
    assert pc.sum(want.column("amount_count_7d")).as_py() > 0  # the windows hold events
    assert 0 < want.column("amount_sum_1h").null_count < want.num_rows  # empty windows too
    same(cluster.file_export(ents, feats), want)


def test_on_demand_over_aggregates(cluster: Cluster) -> None:
    ents = entity_rows(seed=8)
    feats = ["txn_risk:amount_vs_week", "user_txn:amount_sum_1d", "txn_risk:big_spender"]
    same(cluster.file_export(ents, feats), cluster.root_export(ents, feats))


def test_refusals_are_4xx_as_a_root_refuses(cluster: Cluster) -> None:
    ents = entity_rows(50).drop_columns(["amount"])
    name = f"ents-{time.monotonic_ns()}.parquet"
    pq.write_table(ents, Path(os.environ["RICKHOUSE_ROUTER_ROOT"]) / name)
    r = cluster.export({"entities_path": name, "features": ["profile_risk:doubled"]})
    assert r.status_code == 422 and "request field 'amount'" in r.text, r.text
    when = "2025-01-02T00:00:00Z"
    r = cluster.export({"entities_as_of": when, "features": ["profile_risk:minor"]})
    assert r.status_code == 422 and "entities_as_of" in r.text, r.text
    r = cluster.export({"entities_as_of": when, "features": AGGREGATES[:1]})
    assert r.status_code == 422 and "entity rows" in r.text, r.text
