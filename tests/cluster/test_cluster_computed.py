"""Computed features through the cluster, against a single root fed the same events.

Real processes on loopback (Tansu broker, nodes a (0-1), b (2-3), the router), P=4:
- an aggregation view (`user_txn`: sums, counts, means, max, stddev, last over 1h/1d/7d)
  ingested through the router: its aggregates read through the router equal the root's;
- an on-demand view whose sources have different join keys (`user_txn` and `user_profile` by
  user_id, `merchant_info` by merchant_id), with a request field sent in "entities": equal to
  the root's, with short and full feature names, mixed with plain features, and the same
  refusal for a missing request field.
Events sit well inside their windows (no edge within minutes of the read time), so the root's
and the nodes' read times give the same windows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pytest

from app.feast_json import feast_json
from cluster.broker import TestBroker
from store import FeatureStore
from tests.cluster._nodes import NodeProcess, write_config
from tests.cluster._router import RouterProcess

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
P = 4
NODES = [("a", "0-1"), ("b", "2-3")]
TS = pa.timestamp("ns", "UTC")
MIN = 60 * 10**9
USERS = 40
MERCHANTS = [f"m{k}" for k in range(12)]
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
    ],
    "feature_services": [
        {"name": "risk", "features": ["merchant_info:risk", "txn_risk:big_spender"]}
    ],
    "on_demand_views": [
        {
            "name": "txn_risk",
            "sources": ["user_txn", "user_profile", "merchant_info"],
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
                {
                    "name": "merchant_risk",
                    "dtype": "float64",
                    "expr": "coalesce(risk, 0.5) * amount",
                },
            ],
        }  # fmt: skip
    ],
}
AGGREGATES = [
    "user_txn:amount_sum_1h",
    "user_txn:amount_sum_1d",
    "user_txn:amount_sum_7d",
    "user_txn:amount_count_1d",
    "user_txn:amount_count_7d",
    "user_txn:amount_mean_7d",
    "user_txn:amount_max_1d",
    "user_txn:amount_stddev_7d",
    "user_txn:merchant_last_7d",
]
# event ages, far from every window edge (1h, 1d, 7d)
AGES = [5 * MIN, 30 * MIN, 3 * 60 * MIN, 10 * 60 * MIN, 2 * 1440 * MIN, 5 * 1440 * MIN,
        9 * 1440 * MIN]  # fmt: skip


def _batches(now: int) -> list[tuple[str, pa.Table]]:
    rng = np.random.default_rng(7)
    out = []
    for _ in range(6):
        n = 150
        ages = rng.choice(AGES, n) + rng.integers(0, MIN, n)  # ties impossible: ns jitter
        amount = rng.random(n) * 400
        out.append(
            (
                "user_txn",
                pa.table(
                    {
                        "user_id": pa.array(rng.integers(0, USERS, n), pa.int64()),
                        "event_timestamp": pa.array(now - ages + rng.integers(0, 999, n), TS),
                        "amount": pa.array(amount, mask=rng.random(n) < 0.05),
                        "merchant": [MERCHANTS[k] for k in rng.integers(0, len(MERCHANTS), n)],
                    }
                ),
            )
        )
    users = list(range(0, USERS, 2))  # odd users have no profile
    out.append(
        (
            "user_profile",
            pa.table(
                {
                    "user_id": pa.array(users, pa.int64()),
                    "event_timestamp": pa.array([now - 3600 * 10**9] * len(users), TS),
                    "age": pa.array([15 + u for u in users], mask=[u % 10 == 4 for u in users]),
                }
            ),
        )
    )
    known = MERCHANTS[:-3]  # three merchants unknown: NOT_FOUND sources
    out.append(
        (
            "merchant_info",
            pa.table(
                {
                    "merchant_id": known,
                    "event_timestamp": pa.array([now - 3600 * 10**9] * len(known), TS),
                    "risk": [math.nan if k == 2 else k / 10 for k in range(len(known))],
                }
            ),
        )
    )
    return out


def _requests() -> list[dict[str, Any]]:
    users = [*range(USERS), 10_000]  # 10_000: never seen
    merchants = [MERCHANTS[u % len(MERCHANTS)] for u in range(len(users))]
    amounts: list[Any] = [float(u * 37 % 500) for u in range(len(users))]
    amounts[3] = None  # a null request value
    odv = ["txn_risk:amount_vs_week", "txn_risk:big_spender", "txn_risk:merchant_risk"]
    return [
        {"features": AGGREGATES, "entities": {"user_id": users}},
        {"features": AGGREGATES[:2], "entities": {"user_id": [5]}},
        {
            "features": [*odv, "user_profile:age", "merchant_info:risk"],
            "entities": {"user_id": users, "merchant_id": merchants, "amount": amounts},
        },
        {
            "features": ["merchant_info:risk", odv[2], "user_txn:amount_sum_7d"],
            "entities": {"merchant_id": merchants, "user_id": users, "amount": amounts},
            "full_feature_names": True,
        },
        {
            "features": [odv[1]],
            "entities": {"user_id": [3], "merchant_id": ["m1"], "amount": [2000.0]},
        },
        {
            "feature_service": "risk",
            "entities": {"user_id": users[:9], "merchant_id": merchants[:9], "amount": amounts[:9]},
        },
    ]


def _oracle(fs: FeatureStore) -> list[Any]:
    out = []
    for r in _requests():
        res = fs.get_online_features(
            r.get("feature_service") or r["features"],
            r["entities"],
            full_feature_names=r.get("full_feature_names", False),
        )
        out.append(orjson.loads(orjson.dumps(feast_json(res), option=orjson.OPT_SERIALIZE_NUMPY)))
    return out


@contextmanager
def _cluster(config: Path, tmp: Path, names: list[str]) -> Iterator[tuple[RouterProcess, dict]]:
    """The named nodes and the router, started in parallel (startup dominates on a loaded
    machine); all stopped on exit. The pool's threads spawned the children, which die with
    their spawning thread (PR_SET_PDEATHSIG): the pool lives until they are stopped."""
    nodes = {n: NodeProcess(config, n, tmp / f"{n}.log") for n in names}
    router = RouterProcess(config, tmp / "router.log")
    pool = ThreadPoolExecutor(len(nodes) + 1)
    try:
        starts = [pool.submit(n.start, 120.0) for n in nodes.values()]
        starts.append(pool.submit(router.start, 120.0))
        for f in starts:
            f.result()
        deadline = time.monotonic() + 30  # the router has seen every node
        while httpx.get(f"{router.url}/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the router never saw every partition live"
            time.sleep(0.1)
        yield router, nodes
    finally:
        router.stop()
        for n in nodes.values():
            n.stop()
        pool.shutdown()


def _untimed(answer: dict[str, Any], since: int) -> dict[str, Any]:
    """`answer` without the event times of aggregate columns, after checking them: an aggregate's
    event time is its read time (the window's end), which each tablet and the root take from
    their own clocks."""
    aggregates = {ref.split(":")[1] for ref in AGGREGATES}
    out = {"metadata": answer["metadata"], "results": []}
    for name, col in zip(answer["metadata"]["feature_names"], answer["results"], strict=True):
        if name.split("__")[-1] in aggregates:
            for text in col["event_timestamps"]:
                t = np.datetime64(text.rstrip("Z"), "ns").astype(np.int64)
                assert since <= t <= time.time_ns(), (name, text)
            col = {**col, "event_timestamps": None}
        out["results"].append(col)
    return out


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def test_aggregates_and_on_demand_across_join_keys_equal_one_root(
    broker: TestBroker, topic: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "cluster.yaml", broker.bootstrap_servers, topic, P, NODES)
    now = time.time_ns()
    root = FeatureStore(tmp_path / "oracle")
    try:
        root.apply(DEFS)
        with _cluster(config, tmp_path, [n for n, _ in NODES]) as (router, nodes):
            r = router.put("/v1/definitions", json=DEFS)
            assert r.status_code == 200, r.text
            for view, table in _batches(now):
                root.ingest(view, table)
                r = router.post(f"/v1/ingest/{view}", content=_ipc(table),
                                headers={"content-type": "application/vnd.apache.arrow.stream"})  # fmt: skip
                assert r.status_code == 200, r.text
            expected = _oracle(root)
            for req, want in zip(_requests(), expected, strict=True):
                got = router.post("/get-online-features", json=req)
                assert got.status_code == 200, got.text
                assert _untimed(got.json(), now) == _untimed(want, now), req
            present = expected[0]["results"][1]["statuses"]
            assert "PRESENT" in present  # the windows hold events
            assert "NaN" in expected[2]["results"][-1]["values"]  # a NaN source is a value

            # forgetting users reaches their events: aggregates and computed features agree
            want = root.forget("user", [1, 2, 7])
            got = router.post("/v1/forget/user", json={"keys": [1, 2, 7]})
            assert got.status_code == 200, got.text
            assert got.json()["views"] == want["views"], (got.json(), want)
            for req, want in zip(_requests(), _oracle(root), strict=True):
                got = router.post("/get-online-features", json=req)
                assert got.status_code == 200, got.text
                assert _untimed(got.json(), now) == _untimed(want, now), req

            # a missing request field: the root's refusal
            bad = {"features": ["txn_risk:merchant_risk"],
                   "entities": {"user_id": [1], "merchant_id": ["m1"]}}  # fmt: skip
            got = router.post("/get-online-features", json=bad)
            assert got.status_code == 422 and "amount" in got.text, got.text
            # the audit covers the aggregation view on every tablet
            for name, node in nodes.items():
                tablets = httpx.get(f"{node.url}/v1/audit", timeout=300).json()
                for p, audit in tablets.items():
                    assert audit["user_txn"]["mismatches"] == 0, (name, p, audit["user_txn"])
    finally:
        root.close()
