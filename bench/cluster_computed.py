"""The cost of the router computing an on-demand view, and of a delete through the router.

One command: `python bench/cluster_computed.py [--requests 300] [--rounds 3]`. Starts the Tansu
test broker, P=4, nodes a (0-1) and b (2-3) and the router, applies tests/cluster/
test_cluster_computed.py's definitions (an aggregation view, two plain views of different join
keys, an on-demand view over the three) and ingests its events. Then, through the router, in
alternating rounds of `requests` sequential keep-alive requests each:
- `plain`: 1 entity, the four source features the on-demand view reads (two routing groups);
- `on-demand`: 1 entity, the on-demand view's three features (the router reads those sources
  through the same scatter and evaluates the expressions);
and, alternating, `ingest` (a one-row batch) and `delete` (one user of a plain view) writes.
Prints p50/p99 (ms) per kind, the on-demand/plain ratio of the p50s, and the load average.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import pyarrow as pa  # noqa: E402

from cluster.broker import TestBroker  # noqa: E402
from cluster.topic import ensure_topic  # noqa: E402
from tests.cluster._nodes import write_config  # noqa: E402
from tests.cluster.test_cluster_computed import DEFS, TS, _batches, _cluster, _ipc  # noqa: E402

PLAIN = [
    "user_txn:amount_mean_7d",
    "user_txn:amount_sum_1d",
    "user_profile:age",
    "merchant_info:risk",
]
ON_DEMAND = ["txn_risk:amount_vs_week", "txn_risk:big_spender", "txn_risk:merchant_risk"]


def _timed(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes, kind: str
) -> float:
    t0 = time.perf_counter()
    conn.request(method, path, body, {"content-type": kind})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
    return (time.perf_counter() - t0) * 1000


def _summary(name: str, ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"{name:10s} n={len(a):4d} p50 {np.percentile(a, 50):7.2f} ms  p99 {np.percentile(a, 99):7.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--writes", type=int, default=20)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-computed-"))
    with TestBroker(tmp / "tansu.log") as broker:
        ensure_topic(broker.bootstrap_servers, "computed", 4)
        nodes = [("a", "0-1"), ("b", "2-3")]
        config = write_config(tmp / "cluster.yaml", broker.bootstrap_servers, "computed", 4, nodes)
        with _cluster(config, tmp, ["a", "b"]) as (router, _):
            assert router.put("/v1/definitions", json=DEFS).status_code == 200
            for view, table in _batches(time.time_ns()):
                r = router.post(f"/v1/ingest/{view}", content=_ipc(table),
                                headers={"content-type": "application/vnd.apache.arrow.stream"})  # fmt: skip
                assert r.status_code == 200, r.text
            u = urlsplit(router.url)
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            ents = {"user_id": [7], "merchant_id": ["m3"], "amount": [120.0]}
            reads = {
                "plain": orjson.dumps({"features": PLAIN, "entities": ents}),
                "on-demand": orjson.dumps({"features": ON_DEMAND, "entities": ents}),
            }
            times: dict[str, list[float]] = {k: [] for k in (*reads, "ingest", "delete")}
            for _ in range(args.rounds):
                for name, body in reads.items():
                    for _ in range(args.requests):
                        times[name].append(
                            _timed(conn, "POST", "/get-online-features", body, "application/json")
                        )
            now = time.time_ns()
            for i in range(args.writes):
                row = pa.table({"user_id": pa.array([1000 + i], pa.int64()),
                                "event_timestamp": pa.array([now], TS),
                                "age": pa.array([30], pa.int64())})  # fmt: skip
                times["ingest"].append(_timed(conn, "POST", "/v1/ingest/user_profile", _ipc(row),
                                              "application/vnd.apache.arrow.stream"))  # fmt: skip
                body = orjson.dumps({"entities": {"user_id": [1000 + i]}})
                times["delete"].append(
                    _timed(conn, "DELETE", "/v1/entities/user_profile", body, "application/json")
                )
            conn.close()
    for name, ms in times.items():
        print(_summary(name, ms))
    ratio = np.percentile(times["on-demand"], 50) / np.percentile(times["plain"], 50)
    print(f"on-demand / plain p50: {ratio:.2f}x")
    ratio = np.percentile(times["delete"], 50) / np.percentile(times["ingest"], 50)
    print(f"delete / ingest p50: {ratio:.2f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
