"""Cluster node figures: apply throughput from the broker into a node's tablets, and time from a
node's (re)start to serving.

One command: `python bench/cluster.py [--batches 40] [--rows 5000]`. Starts the Tansu test broker,
a P=4 topic, produces definitions and `batches` transactional batches of `rows` rows (split by
partition) BEFORE the node starts, then:
1. spawns `rickhouse node` on empty tablets: time to serving, then time until every record is
   applied -> apply rows/s (broker -> tablets: decode, log + fsync, online + offline apply);
2. SIGKILLs it and restarts it on full tablets: time to serving (recovery + imports);
3. side by side, the same batches into one single-node FeatureStore with plain ingest (rows/s).
Broker, node and this client share the machine's cores: the figures include that contention.

`python bench/cluster.py --apply [--batches 40] [--rows 5000] [--rounds 3]`: the node's apply alone,
in process and without a broker: the same records (one partition's slice of each batch), as
decoded from the log, applied to 4 fresh tablets one record at a time (one fsync each:
`ingest_at`) and as one group per tablet (cluster/applier.py `apply_ready`: one fsync per
group), alternating, `rounds` times each: rows/s and the ratio.

`python bench/cluster.py --commits [--batches 2000]`: `batches` small batches written as the router
writes them (each batch, then its commit record in the commits topic), applied by node a; then
SIGKILL and restart: time to serving, and time until a batch written after the restart is
applied (before that the node must have read the commits topic up to the batch's commit).

`python bench/cluster.py --failover [--seconds 5]`: P=4, node a and its replica a2 (both 0-3) and
the router; 100k rows ingested, then one sequential client reads 1 entity through the router for
`seconds` while a is SIGKILLed after a third of it: reads sent, reads failed (non-200 or wrong
values); then a's restart to serving and to caught up.

`python bench/cluster.py --router [--seconds 5]`: P=4, nodes a (0-1) and b (2-3) and the router,
beside `rickhouse serve` on its own root: Arrow ingest of 500k rows in 100k-row batches through
each (rows/s; through the router also the time from its acknowledgement until both nodes applied
the batch), then `/get-online-features` with 1 and 100 entities from one sequential keep-alive
client through each (req/s, p50, p99): the difference is the cost of the router's hop.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import yaml  # noqa: E402

from cluster.applier import apply_ready  # noqa: E402
from cluster.broker import TestBroker, free_port  # noqa: E402
from cluster.producer import TransactionalProducer  # noqa: E402
from cluster.record import DATA, KIND, VIEW, LogRecord, Slice, encode_table  # noqa: E402
from cluster.staging import Ready  # noqa: E402
from cluster.tablets import TabletOptions  # noqa: E402
from cluster.topic import ensure_topic  # noqa: E402
from cluster.writer import BatchWriter  # noqa: E402
from store import FeatureStore  # noqa: E402
from tests.cluster._nodes import (  # noqa: E402
    DEFS,
    ROOT,
    T0,
    TS,
    NodeProcess,
    batch,
    data_slices,
    definitions_slices,
    produce,
    write_config,
)
from tests.cluster._router import RouterProcess  # noqa: E402

P = 4


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--router", action="store_true", help="the router figures instead")
    ap.add_argument("--commits", action="store_true", help="restart with a long commits topic")
    ap.add_argument("--apply", action="store_true", help="node apply in process, no broker")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--failover", action="store_true", help="reads during a replica kill")
    ap.add_argument("--seconds", type=float, default=5.0, help="per read measurement")
    args = ap.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        if args.router:
            run_router(tmp, args.seconds)
        elif args.commits:
            run_commits(tmp, args.batches)
        elif args.failover:
            run_failover(tmp, args.seconds)
        elif args.apply:
            run_apply(tmp, args.batches, args.rows, args.rounds)
        else:
            run(tmp, args.batches, args.rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, n_batches: int, rows: int) -> None:
    batches = [batch(i, rows) for i in range(n_batches)]
    total = sum(t.num_rows for _, t in batches)
    print(f"data: {n_batches} batches x {rows} rows = {total:,} rows, P={P}")
    with TestBroker(tmp / "tansu.log") as broker:
        ensure_topic(broker.bootstrap_servers, "bench", P)
        producer = TransactionalProducer(broker.bootstrap_servers, "bench", "bench-feed")
        last: dict[int, int] = {}
        t0 = time.perf_counter()
        produce(producer, definitions_slices(DEFS, P), last)
        for view, table in batches:
            produce(producer, data_slices(view, table, P), last)
        produced = time.perf_counter() - t0
        print(f"produce (one transaction per batch): {total / produced:,.0f} rows/s")
        config = write_config(
            tmp / "cluster.yaml", broker.bootstrap_servers, "bench", P, [("a", "0-3")]
        )
        node = NodeProcess(config, "a", tmp / "node.log")
        try:
            t0 = time.perf_counter()
            ready = node.start(120)
            node.wait_applied(last, timeout_s=600)
            caught_up = time.perf_counter() - t0
            apply_s = caught_up - ready
            print(f"node cold start to serving: {ready:.2f} s")
            print(f"node apply: {total / apply_s:,.0f} rows/s ({apply_s:.2f} s after serving)")
            node.kill()
            t0 = time.perf_counter()
            restart = node.start(120)
            node.wait_applied(last, timeout_s=120)
            print(f"node restart (SIGKILL, {total:,} rows held) to serving: {restart:.2f} s; "
                  f"caught up after {time.perf_counter() - t0:.2f} s")  # fmt: skip
        finally:
            node.stop()
    fs = FeatureStore(tmp / "single")
    fs.apply(DEFS)
    t0 = time.perf_counter()
    for view, table in batches:
        fs.ingest(view, table)
    single = time.perf_counter() - t0
    fs.close()
    print(f"single-node ingest of the same batches: {total / single:,.0f} rows/s")
    print(f"ratio node apply / single-node ingest: {single / apply_s:.2f}")


def run_apply(tmp: Path, n_batches: int, rows: int, rounds: int) -> None:
    """Per-record apply (one fsync each) against group apply (one fsync per tablet)."""
    readies: dict[int, list[Ready]] = {p: [] for p in range(P)}
    offset = 1  # offset 0 (seq 1): the definitions
    for i in range(n_batches):
        for s in data_slices(*batch(i, rows), P):
            assert isinstance(s.payload, pa.Table)
            value = encode_table(s.payload)
            record = LogRecord(s.partition, offset, {VIEW: s.view.encode(), KIND: b"data"}, value)
            readies[s.partition].append(Ready(offset + 1, s.view, DATA, [record]))
            offset += 1
    total = n_batches * rows
    records = sum(len(r) for r in readies.values())
    print(f"data: {records} records of ~{total // records:,} rows ({total:,} rows), P={P}")
    got: dict[str, list[float]] = {"per record": [], "group": []}
    for r in range(rounds):
        for mode in got:
            tablets = [_tablet(tmp / f"{mode}-{r}-{p}") for p in range(P)]
            t0 = time.perf_counter()
            for p, fs in enumerate(tablets):
                if mode == "group":
                    apply_ready(fs, readies[p])
                else:
                    for ready in readies[p]:
                        fs.ingest_at(ready.seq, ready.view, ready.table())
            got[mode].append(total / (time.perf_counter() - t0))
            for fs in tablets:
                fs.close()
    for mode, figures in got.items():
        print(f"node apply, {mode:10}: median {np.median(figures):,.0f} rows/s "
              f"({', '.join(f'{f:,.0f}' for f in figures)})")  # fmt: skip
    print(f"ratio group / per record: {np.median(got['group']) / np.median(got['per record']):.2f}")


def _tablet(root: Path) -> FeatureStore:
    opts = TabletOptions()
    fs = FeatureStore(
        root, tree_options=opts.tree_options(), offline_options=opts.offline_options()
    )
    fs.apply_at(1, DEFS)
    return fs


def _write(writer: BatchWriter, slices: list[Slice], last: dict[int, int]) -> None:
    """One batch as the router writes it: its data, then its commit record."""
    for p, off in writer.produce(slices).items():
        last[p] = max(last.get(p, -1), off)


def run_commits(tmp: Path, n_batches: int) -> None:
    """Restart of a node whose commits topic holds `n_batches` commit records."""
    print(f"data: {n_batches} router-style batches of 20 rows (batch + commit record), P={P}")
    with TestBroker(tmp / "tansu.log") as broker:
        ensure_topic(broker.bootstrap_servers, "bench", P)
        writer = BatchWriter(broker.bootstrap_servers, "bench", "bench-router")
        last: dict[int, int] = {}
        t0 = time.perf_counter()
        _write(writer, definitions_slices(DEFS, P), last)
        for i in range(n_batches):
            view, table = batch(i, 20)
            _write(writer, data_slices(view, table, P), last)
        print(f"produce: {n_batches / (time.perf_counter() - t0):,.0f} batches/s")
        config = write_config(
            tmp / "cluster.yaml", broker.bootstrap_servers, "bench", P, [("a", "0-3")]
        )
        node = NodeProcess(config, "a", tmp / "node.log")
        try:
            t0 = time.perf_counter()
            node.start(120)
            node.wait_applied(last, timeout_s=600)
            print(f"node cold start to caught up: {time.perf_counter() - t0:.2f} s")
            time.sleep(2.0)  # past the node's periodic save of its commits-topic position
            node.kill()
            t0 = time.perf_counter()
            restart = node.start(120)
            view, table = batch(n_batches, 20)
            fresh: dict[int, int] = {}
            _write(writer, data_slices(view, table, P), fresh)
            node.wait_applied(fresh, timeout_s=300)
            print(f"node restart (SIGKILL) to serving: {restart:.2f} s; to applying a new "
                  f"batch: {time.perf_counter() - t0:.2f} s")  # fmt: skip
        finally:
            node.stop()
            writer.close()


# ---------------------------------------------------------------------------- the router

ROUTER_USERS = 500_000  # 5 Arrow batches of 100k rows
ARROW = {"content-type": "application/vnd.apache.arrow.stream"}


def _user_batches(n: int, size: int) -> list[bytes]:
    rng = np.random.default_rng(7)
    out = []
    for start in range(0, n, size):
        k = min(size, n - start)
        t = pa.table(
            {
                "user_id": pa.array(np.arange(start, start + k), pa.int64()),
                "event_timestamp": pa.array(np.full(k, T0), TS),
                "x": pa.array(rng.integers(0, 1000, k), pa.int64()),
                "s": pa.array([f"s{i % 1000}" for i in range(k)]),
            }
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
        out.append(sink.getvalue().to_pybytes())
    return out


def _reads(client: httpx.Client, url: str, entities: int, seconds: float) -> dict[str, float]:
    """One sequential keep-alive client for `seconds`: req/s, p50, p99 (ms)."""
    rng = np.random.default_rng(entities)
    lat = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        users = rng.integers(0, ROUTER_USERS, entities).tolist()
        body = {"features": ["user_stats:x", "user_stats:s"], "entities": {"user_id": users}}
        t0 = time.perf_counter()
        r = client.post(f"{url}/get-online-features", json=body)
        lat.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    a = np.array(lat) * 1000
    return {"rps": len(a) / a.sum() * 1000, "p50": float(np.percentile(a, 50)),
            "p99": float(np.percentile(a, 99))}  # fmt: skip


def run_router(tmp: Path, seconds: float) -> None:
    """Arrow ingest and reads through the router (P=4, nodes a: 0-1, b: 2-3) vs `rickhouse
    serve` on the same data."""
    bodies = _user_batches(ROUTER_USERS, 100_000)
    client = httpx.Client(timeout=120)
    with TestBroker(tmp / "tansu.log") as broker:
        ensure_topic(broker.bootstrap_servers, "bench", P)
        config = write_config(
            tmp / "cluster.yaml", broker.bootstrap_servers, "bench", P, [("a", "0-1"), ("b", "2-3")]
        )
        nodes = [NodeProcess(config, n, tmp / f"{n}.log") for n in ("a", "b")]
        router = RouterProcess(config, tmp / "router.log")
        serve = ServeProcess(tmp / "single", tmp / "serve.log")
        try:
            for n in nodes:
                n.start(120)
            router.start()
            serve.start()
            assert router.put("/v1/definitions", json=DEFS).status_code == 200
            assert client.put(f"{serve.url}/v1/definitions", json=DEFS).status_code == 200
            for name, url in (("router", router.url), ("serve", serve.url)):
                posting = 0.0
                visible = []
                for body in bodies:
                    t0 = time.perf_counter()
                    r = client.post(f"{url}/v1/ingest/user_stats", content=body, headers=ARROW)
                    t_ack = time.perf_counter()
                    posting += t_ack - t0
                    assert r.status_code == 200, r.text
                    if name == "router":
                        position = {int(p): o for p, o in r.json()["position"].items()}
                        for n in nodes:
                            n.wait_applied(
                                {p: o for p, o in position.items() if p in _owned(n)}, 120
                            )
                        visible.append(time.perf_counter() - t_ack)
                extra = ""
                if visible:
                    extra = (
                        f"; ack-to-visible on both nodes: median {np.median(visible) * 1000:.0f} ms"
                    )
                print(f"ingest through {name}: {ROUTER_USERS / posting:,.0f} rows/s "
                      f"(100k-row Arrow batches, request to durable acknowledgement){extra}")  # fmt: skip
            for entities in (1, 100):
                got = {n: _reads(client, u, entities, seconds)
                       for n, u in (("serve", serve.url), ("router", router.url))}  # fmt: skip
                for n, g in got.items():
                    print(f"get-online-features {entities:>3} entities via {n:6}: "
                          f"{g['rps']:,.0f} req/s, p50 {g['p50']:.2f} ms, p99 {g['p99']:.2f} ms")  # fmt: skip
                print(f"  hop cost at p50: {got['router']['p50'] - got['serve']['p50']:+.2f} ms")
        finally:
            client.close()
            router.stop()
            serve.stop()
            for n in nodes:
                n.stop()


def run_failover(tmp: Path, seconds: float) -> None:
    """Reads through the router while one of two replicas is SIGKILLed."""
    body = _user_batches(100_000, 100_000)[0]
    client = httpx.Client(timeout=30)
    with TestBroker(tmp / "tansu.log") as broker:
        ensure_topic(broker.bootstrap_servers, "bench", P)
        config = write_config(
            tmp / "cluster.yaml",
            broker.bootstrap_servers,
            "bench",
            P,
            [("a", "0-3"), ("a2", "0-3")],
        )
        nodes = {n: NodeProcess(config, n, tmp / f"{n}.log") for n in ("a", "a2")}
        router = RouterProcess(config, tmp / "router.log")
        try:
            for n in nodes.values():
                n.start(120)
            router.start()
            assert router.put("/v1/definitions", json=DEFS).status_code == 200
            r = client.post(f"{router.url}/v1/ingest/user_stats", content=body, headers=ARROW)
            assert r.status_code == 200, r.text
            position = {int(p): o for p, o in r.json()["position"].items()}
            for n in nodes.values():
                n.wait_applied(position, 120)
            want = client.post(
                f"{router.url}/get-online-features",
                json={"features": ["user_stats:x"], "entities": {"user_id": [7]}},
            ).json()
            sent = failed = 0
            killed = False
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                if not killed and time.perf_counter() - t0 > seconds / 3:
                    nodes["a"].kill()
                    killed = True
                got = client.post(
                    f"{router.url}/get-online-features",
                    json={"features": ["user_stats:x"], "entities": {"user_id": [7]}},
                )
                sent += 1
                failed += got.status_code != 200 or got.json() != want
            print(f"reads through the router during a replica kill: {sent} sent, {failed} failed")
            t0 = time.perf_counter()
            restart = nodes["a"].start(120)
            nodes["a"].wait_applied(position, 120)
            print(f"killed replica restart to serving: {restart:.2f} s; caught up after "
                  f"{time.perf_counter() - t0:.2f} s")  # fmt: skip
        finally:
            client.close()
            router.stop()
            for n in nodes.values():
                n.stop()


def _owned(node: NodeProcess) -> set[int]:
    cfg = yaml.safe_load(node.config.read_text())
    spec = next(n["partitions"] for n in cfg["nodes"] if n["name"] == node.name)
    lo, hi = (int(x) for x in str(spec).split("-"))
    return set(range(lo, hi + 1))


class ServeProcess:
    """`rickhouse serve --root ROOT --port PORT` as a child process."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--root", str(self.root),
                 "--port", str(self.port), "--log-level", "warning"],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"serve not up; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)


if __name__ == "__main__":
    main()
