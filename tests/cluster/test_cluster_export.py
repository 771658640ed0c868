"""Training exports through the router on Ray (cluster/export.py, app/router_export.py).

One Tansu broker, one 4-partition cluster (nodes a: 0-1, b: 2-3), one router running a local
Ray (2 CPUs) for the whole module; a single root fed the same batches is the reference: the
cluster export must equal its export row for row, value for value, null for null.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.errors import BadRequestError
from app.router_export import parse_position
from cluster.broker import TestBroker
from cluster.export import list_tablets, prepare
from cluster.partitioning import partition_of
from cluster.topic import ensure_topic
from store import Definitions, FeatureStore
from store.errors import ValidationError
from tests.cluster._nodes import ROOT, NodeProcess, write_config
from tests.cluster._router import RouterProcess

pytestmark = pytest.mark.timeout(300)
slow = pytest.mark.slow  # the tests over the module's cluster

T0 = 1_735_689_600 * 10**9  # 2025-01-01
TS = pa.timestamp("ns", "UTC")
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
DEFS: dict[str, Any] = {
    "entities": [
        {"name": "user", "join_keys": ["user_id"], "dtype": "int64"},
        {"name": "item", "join_keys": ["item_id"], "dtype": "string"},
        {"name": "country", "join_keys": ["country"], "dtype": "string"},
    ],
    "feature_views": [
        {
            "name": "user_stats",
            "entities": ["user"],
            "ttl": "40s",
            "features": [{"name": "x", "dtype": "int64"}, {"name": "s", "dtype": "string"}],
        },
        {
            "name": "item_stats",
            "entities": ["item"],
            "features": [{"name": "price", "dtype": "float64"}],
        },
        {
            "name": "user_item",
            "entities": ["user", "item"],
            "partition_by": "user",
            "features": [{"name": "clicks", "dtype": "int64"}],
        },
        {
            "name": "countries",
            "entities": ["country"],
            "replicate": "all",
            "features": [{"name": "rate", "dtype": "float64"}],
        },
    ],
    "feature_services": [
        {
            "name": "training",
            "features": [
                "user_stats:x",
                "user_stats:s",
                "item_stats:price",
                "user_item:clicks",
                "countries:rate",
            ],
        }
    ],
}
COUNTRIES = ["de", "fr", "jp", "us", "br"]


def batch(i: int, rows: int = 400) -> tuple[str, pa.Table]:
    """Batch i: user_stats, item_stats, user_item or countries; late events, ties, nulls."""
    rng = np.random.default_rng(100 + i)
    event = pa.array(T0 + rng.integers(0, 100, rows) * 10**9, TS)
    created = pa.array(np.full(rows, T0 + (i + 1) * 10**9), TS)
    base = {"event_timestamp": event, "created_timestamp": created}
    if i % 5 == 4:
        return "user_item", pa.table({
            "user_id": pa.array(rng.integers(0, 300, rows), pa.int64()),
            "item_id": [f"i{k}" for k in rng.integers(0, 80, rows)], **base,
            "clicks": pa.array(rng.integers(0, 9, rows)),
        })  # fmt: skip
    if i % 4 == 3:
        n = len(COUNTRIES)
        return "countries", pa.table({
            "country": COUNTRIES, "event_timestamp": event[:n], "created_timestamp": created[:n],
            "rate": pa.array(rng.random(n)),
        })  # fmt: skip
    if i % 4 == 2:
        price = rng.random(rows)
        return "item_stats", pa.table({
            "item_id": [f"i{k}" for k in rng.integers(0, 80, rows)], **base,
            "price": pa.array(price, mask=price < 0.1),
        })  # fmt: skip
    x = rng.integers(0, 1000, rows)
    return "user_stats", pa.table({
        "user_id": pa.array(rng.integers(0, 300, rows), pa.int64()), **base,
        "x": pa.array(x, mask=x % 7 == 0), "s": [f"b{i}r{r}" for r in range(rows)],
    })  # fmt: skip


def entity_rows(n: int = 3000, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "user_id": pa.array(rng.integers(0, 330, n), pa.int64()),
        "item_id": [f"i{k}" for k in rng.integers(0, 90, n)],
        "country": [COUNTRIES[k] if k < 5 else "zz" for k in rng.integers(0, 6, n)],
        "event_timestamp": pa.array(T0 + rng.integers(0, 130, n) * 10**9, TS),
        "label": pa.array(rng.random(n)),
    })  # fmt: skip


def ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


class Cluster:
    def __init__(self, tmp: Path, router: RouterProcess, root: FeatureStore, config: Path) -> None:
        self.tmp, self.router, self.root, self.config = tmp, router, root, config
        self.batches = 0

    def ingest(self, count: int) -> None:
        """The next `count` batches into the cluster (through the router) and the root."""
        for i in range(self.batches, self.batches + count):
            view, table = batch(i)
            r = self.router.post(
                f"/v1/ingest/{view}", content=ipc(table), headers={"content-type": ARROW}
            )
            assert r.status_code == 200, r.text
            self.root.ingest(view, table)
        self.batches += count

    def export(self, body: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        if body is not None:
            kw["json"] = body
        return self.router.client.post(f"{self.router.url}/v1/training-export", timeout=120, **kw)

    def root_export(self, entities: Any, features: Any, **kw: Any) -> pa.Table:
        out = self.tmp / f"root-{time.monotonic_ns()}.parquet"
        self.root.export_training(entities, features, str(out), **kw)
        return pq.read_table(out)


def same(a: pa.Table, b: pa.Table) -> None:
    a, b = a.replace_schema_metadata(None), b.replace_schema_metadata(None)
    assert a.schema.equals(b.schema), (a.schema, b.schema)
    assert a.num_rows == b.num_rows
    for name in a.column_names:
        assert a.column(name).equals(b.column(name)), name


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster-export")
    env = {
        "RICKHOUSE_ROUTER_ROOT": str(tmp / "router"),
        "RICKHOUSE_RAY_CPUS": "2",
        "RICKHOUSE_TEST_TASK_PAUSE_FILE": str(tmp / "pause"),
    }
    (tmp / "router").mkdir()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the router (and its Ray workers) inherit them
    nodes: list[NodeProcess] = []
    router: RouterProcess | None = None
    root = FeatureStore(tmp / "root")
    try:
        with TestBroker(tmp / "tansu.log") as broker:
            ensure_topic(broker.bootstrap_servers, "export", 4)
            config = write_config(
                tmp / "cluster.yaml", broker.bootstrap_servers, "export", 4,
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
            c = Cluster(tmp, router, root, config)
            c.ingest(12)
            yield c
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


@slow
def test_feature_service_equals_single_root_arrow_json_and_file(cluster: Cluster) -> None:
    ents = entity_rows()
    want = cluster.root_export(ents, "training")
    assert want.column("rate").null_count < want.num_rows  # the replicated view is read
    assert want.column("clicks").null_count < want.num_rows  # and the partition_by one
    r = cluster.export(
        content=ipc(ents),
        params={"feature_service": "training"},
        headers={"content-type": ARROW, "accept": PARQUET},
    )
    assert r.status_code == 200, r.text
    same(pq.read_table(io.BytesIO(r.content)), want)
    position = r.headers["x-rickhouse-position"]
    assert sorted(int(p) for p in httpx.Response(200, content=position).json()) == [0, 1, 2, 3]

    # JSON columns, `features`, streamed back as Arrow IPC
    cols = {
        "user_id": ents.column("user_id").to_pylist()[:500],
        "item_id": ents.column("item_id").to_pylist()[:500],
        "country": ents.column("country").to_pylist()[:500],
        "event_timestamp": [
            t.isoformat() for t in ents.column("event_timestamp").to_pylist()[:500]
        ],
    }
    refs = ["item_stats:price", "user_stats:x"]
    r = cluster.export({"entities": cols, "features": refs}, headers={"accept": ARROW})
    assert r.status_code == 200, r.text
    got = pa.ipc.open_stream(r.content).read_all()
    same(got, cluster.root_export(ents.slice(0, 500).drop_columns(["label"]), refs))

    # a Parquet file under the router's root, the answer a file path naming the position
    path = Path(os.environ["RICKHOUSE_ROUTER_ROOT"]) / "entities.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(ents, path)
    r = cluster.export({"entities_path": "entities.parquet", "feature_service": "training"})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["rows"] == ents.num_rows and set(info["position"]) == {"0", "1", "2", "3"}
    same(pq.read_table(info["path"]), want)


@slow
def test_reproducible_by_position_after_more_ingests(cluster: Cluster) -> None:
    ents = entity_rows(seed=11)
    first = cluster.export({"entities_path": _write(cluster, ents), "feature_service": "training"})
    assert first.status_code == 200, first.text
    position = first.json()["position"]
    before = pq.read_table(first.json()["path"])
    cluster.ingest(8)
    now = cluster.export({"entities_path": _write(cluster, ents), "feature_service": "training"})
    assert now.status_code == 200, now.text
    assert now.json()["position"] != position
    after = pq.read_table(now.json()["path"])
    assert not after.equals(before)  # the new batches changed the answer
    same(after, cluster.root_export(ents, "training"))
    again = cluster.export(
        {
            "entities_path": _write(cluster, ents),
            "feature_service": "training",
            "as_of_position": position,
        }
    )
    assert again.status_code == 200, again.text
    assert again.json()["position"] == position
    same(pq.read_table(again.json()["path"]), before)
    bad = cluster.export(
        {"entities_path": _write(cluster, ents), "features": ["user_stats:x"],
         "as_of_position": {"0": 1}}
    )  # fmt: skip
    assert bad.status_code == 422 and "missing [1, 2, 3]" in bad.text


@slow
def test_entities_as_of_through_the_router(cluster: Cluster) -> None:
    refs = ["user_stats:x", "user_stats:s"]
    when = "2025-01-01T00:01:10Z"
    r = cluster.export({"entities_as_of": when, "features": refs}, headers={"accept": PARQUET})
    assert r.status_code == 200, r.text
    got = pq.read_table(io.BytesIO(r.content))
    want = cluster.root_export(None, refs, entities_as_of=when)
    assert want.num_rows > 100
    same(got, want)


@slow
def test_bad_requests_are_4xx(cluster: Cluster) -> None:
    ents = entity_rows(50)
    r = cluster.export(
        content=ipc(ents.drop_columns(["item_id"])),
        params={"feature_service": "training"},
        headers={"content-type": ARROW},
    )
    assert r.status_code == 422 and "item_id" in r.text
    r = cluster.export({"entities_path": _write(cluster, ents), "features": ["nope:x"]})
    assert r.status_code == 404
    r = cluster.export(
        {"entities_path": _write(cluster, ents), "features": ["user_stats:x"], "as_of_seq": 3}
    )
    assert r.status_code == 422 and "as_of_position" in r.text
    clash = ents.append_column("price", pa.array([1.0] * ents.num_rows))  # a feature's name
    r = cluster.export({"entities_path": _write(cluster, clash), "feature_service": "training"})
    assert r.status_code == 422 and "price" in r.text, r.text


@slow
def test_workers_killed_past_the_retry_fail_the_export_whole(cluster: Cluster) -> None:
    # one user, one view: one task, whose every attempt is SIGKILLed mid-join
    ents = entity_rows(seed=19).drop_columns(["item_id", "country"])
    ents = ents.set_column(0, "user_id", pa.array([7] * ents.num_rows, pa.int64()))
    refs = ["user_stats:x", "user_stats:s"]
    pause = Path(os.environ["RICKHOUSE_TEST_TASK_PAUSE_FILE"])
    pause.write_text("2")
    answer: dict[str, httpx.Response] = {}
    body = {"entities_path": _write(cluster, ents), "features": refs, "out": "doomed.parquet"}
    t = threading.Thread(target=lambda: answer.update(r=cluster.export(body)))
    killed: set[int] = set()
    try:
        t.start()
        assert cluster.router.proc is not None
        deadline = time.monotonic() + 150
        while t.is_alive() and time.monotonic() < deadline:
            for pid in set(_task_workers(cluster.router.proc.pid)) - killed:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        t.join(30)
    finally:
        pause.unlink(missing_ok=True)
    r = answer["r"]
    assert len(killed) >= 2  # Ray re-ran the killed task (TASK_RETRIES), then gave up
    assert r.status_code == 503 and "wrote nothing" in r.text, r.text
    exports = Path(os.environ["RICKHOUSE_ROUTER_ROOT"]) / "exports"
    assert [p.name for p in exports.iterdir() if "doomed" in p.name] == []
    again = cluster.export(body)  # Ray and the router carry on
    assert again.status_code == 200, again.text
    same(pq.read_table(again.json()["path"]), cluster.root_export(ents, refs))


@slow
def test_cli_export_cluster_and_as_of_position(cluster: Cluster) -> None:
    ents = entity_rows(800, seed=17)
    src = cluster.tmp / "cli-entities.parquet"
    pq.write_table(ents, src)
    out = cluster.tmp / "cli" / "out.parquet"
    refs = "user_stats:x,user_stats:s,item_stats:price,user_item:clicks,countries:rate"
    args = ["export", "--cluster", str(cluster.config), "--entities", str(src),
            "--features", refs, "--out", str(out)]  # fmt: skip
    done = _cli(args)
    assert done.returncode == 0, done.stdout + done.stderr
    same(pq.read_table(out), cluster.root_export(ents, refs.split(",")))
    position = done.stdout.split("--as-of-position '")[1].split("'")[0]
    cluster.ingest(4)
    again = _cli([*args[:-1], str(out.with_name("again.parquet")), "--as-of-position", position])
    assert again.returncode == 0, again.stdout + again.stderr
    same(pq.read_table(out.with_name("again.parquet")), pq.read_table(out))
    bad = _cli([*args, "--as-of-seq", "3"])
    assert bad.returncode == 1 and "--as-of-position" in bad.stdout + bad.stderr


def _cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=180,
        cwd=ROOT, env={**os.environ, "COLUMNS": "400"},
    )  # fmt: skip


def test_scatter_keeps_every_row_once_per_group_in_its_partition() -> None:
    defs = Definitions.load(DEFS)
    ents = entity_rows(500)
    spec = prepare(defs, "training", ents, None, 4)
    assert len(spec.groups) == 2  # users (with the replicated countries), items
    users, items = spec.groups
    names = [spec.plan.reads[i].view.name for i in users.reads]
    assert names == ["user_stats", "user_item", "countries"]  # partition_by user, replicated
    for g, key in ((users, "user_id"), (items, "item_id")):
        rows = np.sort(np.concatenate(list(g.rows.values())))
        assert rows.tolist() == list(range(500))
        for p, r in g.rows.items():
            texts = [str(v) for v in ents.column(key).take(pa.array(r)).to_pylist()]
            assert {partition_of(t, 4) for t in texts} == {p}
            assert np.all(np.diff(r) > 0)  # input order kept within a partition
    only_replicated = prepare(defs, ["countries:rate"], ents, None, 4)
    chunks = only_replicated.groups[0].rows
    assert np.concatenate([chunks[p] for p in sorted(chunks)]).tolist() == list(range(500))


def test_list_tablets_pins_at_the_offset_asked(tmp_path: Path) -> None:
    with FeatureStore(tmp_path / "t") as fs:
        fs.apply(DEFS)
        fs.ingest(*batch(0))
        fs.ingest(*batch(4))
        last = fs.last_seq
        now = list_tablets({0: fs}, {0: None}, ["user_stats"])["partitions"]["0"]
        assert now["offset"] == last - 1
        assert now["views"]["user_stats"]["as_of_seq"] == last
        earlier = list_tablets({0: fs}, {0: last - 2}, ["user_stats"])["partitions"]["0"]
        assert earlier["views"]["user_stats"]["as_of_seq"] == last - 1
        with pytest.raises(ValidationError, match="not applied"):
            list_tablets({0: fs}, {0: last + 5}, ["user_stats"])


def test_as_of_position_is_checked() -> None:
    assert parse_position('{"0": 3, "1": -1}') == {0: 3, 1: -1}
    for bad in ("[1]", {"0": "x"}, {"a": 1}, {"0": -2}, "{"):
        with pytest.raises(BadRequestError, match="as_of_position"):
            parse_position(bad)


def _write(cluster: Cluster, ents: pa.Table) -> str:
    name = f"ents-{time.monotonic_ns()}.parquet"
    pq.write_table(ents, Path(os.environ["RICKHOUSE_ROUTER_ROOT"]) / name)
    return name


def _ray_leftovers(router_root: str, wait_s: float = 15.0) -> list[str]:
    """Processes of the router's Ray (they inherit its RICKHOUSE_ROUTER_ROOT) still running
    `wait_s` after it stopped; killed, so a failure leaves nothing behind."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for p in psutil.process_iter():
            try:
                if p.environ().get("RICKHOUSE_ROUTER_ROOT") == router_root:
                    found.append(p)
            except psutil.Error:
                continue
        found = [p for p in found if p.pid != os.getpid()]
        if not found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    names = []
    for p in found:
        try:
            names.append(f"{p.pid} {p.name()}")
            p.kill()
        except psutil.Error:
            continue
    return names


def _task_workers(router_pid: int) -> list[int]:
    """The pids of the router's Ray workers running a tablet's join now."""
    out = []
    for p in psutil.Process(router_pid).children(recursive=True):
        try:
            if "join_tablet" in " ".join(p.cmdline()):
                out.append(p.pid)
        except psutil.Error:
            continue
    return out
