"""A ranking read (1 user x K items) through the router: views placed with `partition_by: user`
and `replicate: all` (one routing group, one node call) against the same views routed by their
join keys (three groups scattered over the nodes), alternating in one run.

    python bench/placement.py [--items 20] [--requests 300]

Starts the Tansu test broker, two nodes (P=4) and a router on loopback; everything shares this
machine's cores. Prints p50/p99 per layout, their ratio, the node calls of one read, the load.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from cluster.broker import TestBroker  # noqa: E402
from cluster.topic import ensure_topic  # noqa: E402
from tests.cluster._equivalence import IPC, counted_read, ipc, put_definitions  # noqa: E402
from tests.cluster._nodes import write_config  # noqa: E402
from tests.cluster._router import running  # noqa: E402

P, USERS, ITEMS = 4, 200, 400
TS = pa.timestamp("ns", "UTC")
T0 = 1_735_689_600 * 10**9


def _defs() -> dict:
    def view(name: str, entities: list[str], feature: str, **placement: str) -> dict:
        f = [{"name": feature, "dtype": "float64"}]
        return {"name": name, "entities": entities, "features": f, **placement}

    return {
        "entities": [
            {"name": "user", "join_keys": ["user_id"], "dtype": "int64"},
            {"name": "item", "join_keys": ["item_id"], "dtype": "string"},
        ],
        "feature_views": [
            view("user_profile", ["user"], "age"),
            view("user_item", ["user", "item"], "clicks", partition_by="user"),
            view("item_info", ["item"], "price", replicate="all"),
            view("user_item_plain", ["user", "item"], "clicks"),
            view("item_info_plain", ["item"], "price"),
        ],
        "feature_services": [
            {"name": "placed", "features": ["user_profile", "user_item", "item_info"]},
            {"name": "plain", "features": ["user_profile", "user_item_plain", "item_info_plain"]},
        ],
    }


def _table(cols: dict) -> pa.Table:
    n = len(next(iter(cols.values())))
    return pa.table({**cols, "event_timestamp": pa.array([T0] * n, pa.int64()).cast(TS)})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    items = [f"i{k}" for k in range(ITEMS)]
    pairs_u = np.repeat(np.arange(USERS), 40)
    pairs_i = [items[k] for k in rng.integers(0, ITEMS, len(pairs_u))]
    with tempfile.TemporaryDirectory() as d, TestBroker(Path(d) / "tansu.log") as broker:
        tmp = Path(d)
        ensure_topic(broker.bootstrap_servers, "bench", P)
        config = write_config(tmp / "c.yaml", broker.bootstrap_servers, "bench", P,
                              [("a", "0-1"), ("b", "2-3")])  # fmt: skip
        with running(config, tmp, ["a", "b"]) as (router, nodes):
            put_definitions(router, _defs())
            batches = {
                "user_profile": {"user_id": np.arange(USERS), "age": rng.random(USERS)},
                "item_info": {"item_id": items, "price": rng.random(ITEMS)},
                "item_info_plain": {"item_id": items, "price": rng.random(ITEMS)},
                "user_item": {"user_id": pairs_u, "item_id": pairs_i,
                              "clicks": rng.random(len(pairs_u))},
                "user_item_plain": {"user_id": pairs_u, "item_id": pairs_i,
                                    "clicks": rng.random(len(pairs_u))},
            }  # fmt: skip
            last: dict[int, int] = {}
            for view, cols in batches.items():
                r = router.post(f"/v1/ingest/{view}", content=ipc(_table(cols)), headers=IPC)
                r.raise_for_status()
                for part, off in r.json()["position"].items():
                    last[int(part)] = max(last.get(int(part), -1), off)
            for node, parts in (("a", (0, 1)), ("b", (2, 3))):  # applied before timing
                nodes[node].wait_applied({q: last[q] for q in parts if q in last}, 300)
            times: dict[str, list[float]] = {"placed": [], "plain": []}
            client = httpx.Client(timeout=30)
            for i in range(args.requests + 20):
                user = int(rng.integers(0, USERS))
                chosen = [items[k] for k in rng.choice(ITEMS, args.items, replace=False)]
                for service in ("placed", "plain") if i % 2 else ("plain", "placed"):
                    body = {"feature_service": service,
                            "entities": {"user_id": [user] * args.items, "item_id": chosen}}  # fmt: skip
                    t0 = time.perf_counter()
                    r = client.post(f"{router.url}/get-online-features", json=body)
                    dt = time.perf_counter() - t0
                    r.raise_for_status()
                    if i >= 20:  # warm-up
                        times[service].append(dt * 1e3)
            calls = {}
            for service in ("placed", "plain"):
                req = {"feature_service": service,
                       "entities": {"user_id": [7] * args.items, "item_id": items[: args.items]}}  # fmt: skip
                calls[service] = len(counted_read(config, req)[1])
    print(f"ranking read, 1 user x {args.items} items, P={P}, 2 nodes, load {os.getloadavg()}")
    stats = {}
    for service, ts in times.items():
        a = np.array(ts)
        stats[service] = (np.median(a), np.percentile(a, 99))
        print(f"  {service:6s}: p50 {stats[service][0]:.2f} ms  p99 {stats[service][1]:.2f} ms  "
              f"node calls per read {calls[service]}  (n={len(a)})")  # fmt: skip
    print(f"  plain/placed p50 ratio {stats['plain'][0] / stats['placed'][0]:.2f}")


if __name__ == "__main__":
    main()
