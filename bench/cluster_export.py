"""Training export through the cluster router on Ray against a single root, same data, same run.

`python bench/cluster_export.py [--rows 1000000] [--users 100000] [--entities 200000]
[--rounds 3]`: starts the Tansu test broker, a P=4 cluster (nodes a: 0-1, b: 2-3) and its
router (a local Ray of 2 CPUs started by the router on the first export), and one single-node
FeatureStore in this process. The same `rows` feature rows (one int64-key view, 3 features,
ttl 7 days, 100k-row batches) go into both: through the router and by `FeatureStore.ingest`.
After one warm-up export on each (Ray start, numba compile in the workers), `rounds` times,
alternating: the root's `export_training` of `entities` entity rows (a Parquet file) and the
same export through `POST /v1/training-export` on the router (file mode). The router's answer
splits its time: prepare (plan, cast, scatter), pin (tablets pinned and listed by the nodes),
Ray tasks (dispatch, the per-tablet joins, results back), the joins themselves (max and sum
over the tasks, measured inside them) and the gather + write. Ray overhead = tasks - the
joins' critical path (sum / CPUs). Medians, ratios and the load average are printed.
Broker, nodes, router, Ray workers and this process share the machine's cores.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from cluster.broker import TestBroker  # noqa: E402
from cluster.topic import ensure_topic  # noqa: E402
from store import FeatureStore  # noqa: E402
from tests.cluster._nodes import NodeProcess, write_config  # noqa: E402
from tests.cluster._router import RouterProcess  # noqa: E402

T0 = 1_735_689_600 * 10**9  # 2025-01-01
DAY = 86_400 * 10**9
TS = pa.timestamp("ns", "UTC")
DEFS = {
    "entities": [{"name": "user", "join_keys": ["user_id"], "dtype": "int64"}],
    "feature_views": [
        {
            "name": "user_stats",
            "entities": ["user"],
            "ttl": "7d",
            "features": [
                {"name": "a", "dtype": "int64"},
                {"name": "b", "dtype": "float64"},
                {"name": "c", "dtype": "string"},
            ],
        }
    ],
    "feature_services": [{"name": "training", "features": ["user_stats:a", "user_stats:b",
                                                          "user_stats:c"]}],
}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--entities", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rh-cluster-export-"))
    try:
        run(tmp, args.rows, args.users, args.entities, args.rounds)
    except BaseException:
        for log in sorted(tmp.glob("*.log")):
            print(f"--- {log.name}:\n" + "\n".join(log.read_text().splitlines()[-30:]))
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def batches(rows: int, users: int, size: int = 100_000) -> list[pa.Table]:
    out = []
    rng = np.random.default_rng(0)
    for i, start in enumerate(range(0, rows, size)):
        n = min(size, rows - start)
        out.append(pa.table({
            "user_id": pa.array(rng.integers(0, users, n), pa.int64()),
            "event_timestamp": pa.array(T0 + rng.integers(0, 30 * DAY, n), TS),
            "created_timestamp": pa.array(np.full(n, T0 + 31 * DAY + i), TS),
            "a": pa.array(rng.integers(0, 10**6, n)),
            "b": pa.array(rng.random(n)),
            "c": pa.array([f"v{k}" for k in rng.integers(0, 1000, n)]),
        }))  # fmt: skip
    return out


def run(tmp: Path, rows: int, users: int, n_entities: int, rounds: int) -> None:
    os.environ.update({"RICKHOUSE_ROUTER_ROOT": str(tmp / "router"), "RICKHOUSE_RAY_CPUS": "2"})
    (tmp / "router").mkdir()
    rng = np.random.default_rng(1)
    ents = pa.table({
        "user_id": pa.array(rng.integers(0, users, n_entities), pa.int64()),
        "event_timestamp": pa.array(T0 + rng.integers(0, 32 * DAY, n_entities), TS),
    })  # fmt: skip
    pq.write_table(ents, tmp / "router" / "entities.parquet")
    root = FeatureStore(tmp / "root")
    root.apply(DEFS)
    with TestBroker(tmp / "tansu.log") as broker:
        ensure_topic(broker.bootstrap_servers, "bench", 4)
        config = write_config(tmp / "cluster.yaml", broker.bootstrap_servers, "bench", 4,
                              [("a", "0-1"), ("b", "2-3")])  # fmt: skip
        nodes = [NodeProcess(config, n, tmp / f"{n}.log") for n in ("a", "b")]
        router = RouterProcess(config, tmp / "router.log")
        try:
            for n in nodes:
                n.start()
            router.start()
            assert router.put("/v1/definitions", json=DEFS).status_code == 200
            t = time.perf_counter()
            last: dict[int, int] = {}
            for table in batches(rows, users):
                sink = io.BytesIO()
                with pa.ipc.new_stream(sink, table.schema) as w:
                    w.write_table(table)
                r = router.post(
                    "/v1/ingest/user_stats",
                    content=sink.getvalue(),
                    headers={"content-type": "application/vnd.apache.arrow.stream"},
                )
                assert r.status_code == 200, r.text  # fmt: skip
                for p, off in r.json()["position"].items():
                    last[int(p)] = max(last.get(int(p), -1), off)
                root.ingest("user_stats", table)
            for n in nodes:
                n.wait_applied({p: o for p, o in last.items() if str(p) in _owned(n)}, 600)
            print(f"ingested {rows:,} rows into both in {time.perf_counter() - t:.1f} s")
            body = {"entities_path": "entities.parquet", "feature_service": "training"}
            client = httpx.Client(timeout=600)

            def cluster_export() -> dict:
                t = time.perf_counter()
                r = client.post(f"{router.url}/v1/training-export", json=body)
                assert r.status_code == 200, r.text
                info = r.json()
                info["wall_s"] = time.perf_counter() - t
                os.unlink(info["path"])
                return info

            def root_export() -> float:
                t, cpu = time.perf_counter(), time.process_time()
                root.export_training(str(tmp / "router" / "entities.parquet"), "training",
                                     str(tmp / "root-out.parquet"))  # fmt: skip
                root_cpu.append(time.process_time() - cpu)
                return time.perf_counter() - t

            root_cpu: list[float] = []
            first = cluster_export()
            print(f"first cluster export (Ray start, worker warm-up): {first['wall_s']:.2f} s")
            root_export()
            roots, clus = [], []
            for _ in range(rounds):
                roots.append(root_export())
                clus.append(cluster_export())
            report(rows, n_entities, roots, clus, statistics.median(root_cpu[1:]))
        finally:
            router.stop()
            for n in nodes:
                n.stop()
            root.close()


def report(rows: int, n_entities: int, roots: list[float], clus: list[dict], cpu: float) -> None:
    med = statistics.median
    wall = med([c["wall_s"] for c in clus])
    t = {k: med([c["timings"][k] for c in clus]) for k in clus[0]["timings"]}
    overhead = t["tasks_s"] - t["join_sum_s"] / 2
    print(f"\n{platform.platform()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    print(f"{rows:,} feature rows, {n_entities:,} entity rows, P=4, 2 nodes, "
          f"{clus[0]['tasks']} Ray tasks on 2 CPUs; medians of {len(roots)} alternating rounds")  # fmt: skip
    print(
        f"single root export_training : {med(roots):.3f} s  (runs {[round(x, 3) for x in roots]})"
    )
    print(f"cluster export via router   : {wall:.3f} s  (runs {[round(c['wall_s'], 3) for c in clus]})")  # fmt: skip
    print(f"single root export CPU      : {cpu:.3f} s")
    print(f"ratio cluster / root        : {wall / med(roots):.2f}x")
    for k, v in t.items():
        print(f"  {k:<15} {v:.3f} s")
    print(f"  HTTP + rest     {wall - sum(v for k, v in t.items() if not k.startswith('join')):.3f} s")  # fmt: skip
    print(f"  Ray overhead    {overhead:.3f} s  (tasks - join_sum / 2 CPUs)")


def _owned(node: NodeProcess) -> set[str]:
    return set(node.get("/v1/positions")["partitions"])


if __name__ == "__main__":
    main()
