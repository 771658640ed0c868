"""Helpers of the node tests: a deterministic batch stream, its producer, node processes.

`NodeProcess` runs `python -m app.cli node` as a child that Linux kills when the test process
dies; `stop()` (SIGTERM, then SIGKILL) always runs from the tests' `finally`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import yaml

from cluster.broker import _die_with_parent, free_port
from cluster.control import encode_definitions
from cluster.partitioning import view_routing
from cluster.producer import TransactionalProducer
from cluster.record import CONTROL, DATA, Slice

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_735_689_600 * 10**9  # 2025-01-01
TS = pa.timestamp("ns", "UTC")
DEFS: dict[str, Any] = {
    "entities": [
        {"name": "user", "join_keys": ["user_id"], "dtype": "int64"},
        {"name": "item", "join_keys": ["item_id"], "dtype": "string"},
    ],
    "feature_views": [
        {
            "name": "user_stats",
            "entities": ["user"],
            "features": [{"name": "x", "dtype": "int64"}, {"name": "s", "dtype": "string"}],
        },
        {
            "name": "item_stats",
            "entities": ["item"],
            "features": [{"name": "price", "dtype": "float64"}],
        },
    ],
}
KEYS = {"user_stats": ["user_id"], "item_stats": ["item_id"]}
USERS = 300
ITEMS = 80


def with_feature(defs: dict[str, Any], view: str, feature: dict[str, str]) -> dict[str, Any]:
    """`defs` with `feature` added to `view` (a new dict)."""
    views = [
        {**v, "features": [*v["features"], feature]} if v["name"] == view else v
        for v in defs["feature_views"]
    ]
    return {**defs, "feature_views": views}


def batch(i: int, rows: int = 120, extra: str | None = None) -> tuple[str, pa.Table]:
    """Batch i of the stream: alternating views, late events, nulls, ties."""
    rng = np.random.default_rng(i)
    created = pa.array(np.full(rows, T0 + (i + 1) * 10**9), TS)
    event = pa.array(T0 + rng.integers(0, 50, rows) * 10**9, TS)  # late and tied events
    if i % 3 == 2:
        ids = [f"i{k}" for k in rng.integers(0, ITEMS, rows)]
        price = rng.random(rows)
        cols = {"item_id": ids, "event_timestamp": event, "created_timestamp": created}
        cols["price"] = pa.array(np.where(price < 0.1, np.nan, price)).fill_null(None)
        return "item_stats", pa.table(cols)
    x = rng.integers(0, 1000, rows)
    cols = {
        "user_id": pa.array(rng.integers(0, USERS, rows), pa.int64()),
        "event_timestamp": event,
        "created_timestamp": created,
        "x": pa.array(x, mask=x % 7 == 0),  # nulls
        "s": pa.array([f"b{i}r{r}" for r in range(rows)]),
    }
    if extra is not None:
        cols[extra] = pa.array([f"{extra}{i}"] * rows)
    return "user_stats", pa.table(cols)


def data_slices(view: str, table: pa.Table, partitions: int) -> list[Slice]:
    parts = view_routing(KEYS[view]).split(table, partitions)
    return [Slice(p, view, DATA, t) for p, t in sorted(parts.items())]


def definitions_slices(defs: dict[str, Any], partitions: int) -> list[Slice]:
    return [Slice(p, "", CONTROL, encode_definitions(defs)) for p in range(partitions)]


def produce(producer: TransactionalProducer, slices: list[Slice], last: dict[int, int]) -> None:
    for p, off in producer.produce(slices).items():
        last[p] = max(last.get(p, -1), off)


def write_config(
    path: Path, servers: str, topic: str, partitions: int, nodes: list[tuple[str, str]]
) -> Path:
    """cluster.yaml with nodes [(name, partitions spec)] on free ports under path's directory."""
    cfg = {
        "partitions": partitions,
        "kafka": {"bootstrap_servers": servers, "topic": topic},
        "nodes": [
            {
                "name": name,
                "url": f"http://127.0.0.1:{free_port()}",
                "root": f"data/{name}",
                "partitions": spec,
            }
            for name, spec in nodes
        ],
        "router": {"url": f"http://127.0.0.1:{free_port()}"},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


class NodeProcess:
    """`rickhouse node --cluster CONFIG --name NAME` as a child process."""

    def __init__(self, config: Path, name: str, log: Path) -> None:
        self.config, self.name, self.log = config, name, log
        cfg = yaml.safe_load(config.read_text())
        self.url = next(n["url"] for n in cfg["nodes"] if n["name"] == name)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_s: float = 60.0) -> float:
        """Start and wait until /health answers; seconds from spawn to serving."""
        t0 = time.monotonic()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "node", "--cluster", str(self.config),
                 "--name", self.name, "--log-level", "warning"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=_die_with_parent,
            )  # fmt: skip
        while time.monotonic() - t0 < ready_timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"node {self.name} exited {self.proc.returncode}; see {self.log}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(
            f"node {self.name} not serving within {ready_timeout_s} s; see {self.log}"
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM (the node closes its tablets), SIGKILL after 30 s. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def get(self, path: str) -> Any:
        r = httpx.get(f"{self.url}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=30)

    def wait_applied(self, last: dict[int, int], timeout_s: float = 60.0) -> None:
        """Wait until every partition in `last` has applied at least that offset."""
        deadline = time.monotonic() + timeout_s
        while True:
            parts = self.get("/v1/positions")["partitions"]
            behind = {p: o for p, o in last.items() if parts[str(p)]["applied_offset"] < o}
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"node {self.name} behind at {behind}: {parts}")
            time.sleep(0.1)
