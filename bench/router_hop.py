"""The cost of the router's hop on `/get-online-features`, side by side with `rickhouse serve`.

One command: `python bench/router_hop.py [--users 20000] [--seconds 2] [--rounds 5]`. Starts the
Tansu test broker, P=4, nodes a (0-1) and b (2-3), the router, and `rickhouse serve` on its own
root; ingests the same `users` rows into both (Arrow, 10k-row batches); then, for 1 and 100
entities, alternates `rounds` segments of `seconds` each against serve, the router and node a
directly (1 entity only: a key of partition 0 with `route_by=@0`, the request the router sends):
one sequential keep-alive http.client client, so the hop is the router's p50 minus serve's in
the same run. Prints req/s, p50, p99 (ms) per target, the CPU per request of each server
process involved (from /proc: serve; router, node a, node b), the hop at p50 and the
router/serve throughput ratio, and the load average before and after. Broker, nodes, router, serve and this
client share the machine's cores.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402

from bench.cluster import ARROW, ServeProcess, _owned, _user_batches  # noqa: E402
from cluster.broker import TestBroker  # noqa: E402
from cluster.partitioning import partition_of  # noqa: E402
from cluster.topic import ensure_topic  # noqa: E402
from tests.cluster._nodes import DEFS, NodeProcess, write_config  # noqa: E402
from tests.cluster._router import RouterProcess  # noqa: E402

P = 4
FEATURES = ["user_stats:x", "user_stats:s"]


class Client:
    """One keep-alive connection; `post` returns (status, seconds)."""

    def __init__(self, url: str, target: str = "/get-online-features") -> None:
        u = urlsplit(url)
        self.target = target
        self.conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=30)

    def post(self, body: bytes) -> float:
        t0 = time.perf_counter()
        self.conn.request("POST", self.target, body, {"content-type": "application/json"})
        r = self.conn.getresponse()
        content = r.read()
        dt = time.perf_counter() - t0
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {content[:300]!r}")
        return dt


def segment(client: Client, keys: list[int], entities: int, seconds: float, seed: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        users = [keys[i] for i in rng.integers(0, len(keys), entities)]
        body = orjson.dumps({"features": FEATURES, "entities": {"user_id": users}})
        out.append(client.post(body))
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(lat: list[float]) -> dict[str, float]:
    a = np.array(lat) * 1000
    return {
        "rps": len(a) / a.sum() * 1000,
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=2.0, help="per segment")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-hop-"))
    try:
        run(tmp, args.users, args.seconds, args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load after: {os.getloadavg()}")


def run(tmp: Path, users: int, seconds: float, rounds: int) -> None:
    bodies = _user_batches(users, 10_000)
    with TestBroker(tmp / "tansu.log") as broker, httpx.Client(timeout=120) as http:
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
            assert http.put(f"{serve.url}/v1/definitions", json=DEFS).status_code == 200
            for url in (router.url, serve.url):
                for body in bodies:
                    r = http.post(f"{url}/v1/ingest/user_stats", content=body, headers=ARROW)
                    assert r.status_code == 200, r.text
                    if url == router.url:
                        position = {int(p): o for p, o in r.json()["position"].items()}
                        for n in nodes:
                            owned = _owned(n)
                            n.wait_applied({p: o for p, o in position.items() if p in owned})
            everyone = list(range(users))
            on_a = [u for u in everyone if partition_of(str(u), P) == 0]
            clients = {"serve": serve.url, "router": router.url, "node a": nodes[0].url}
            conns = {name: Client(url) for name, url in clients.items()}
            conns["node a"] = Client(nodes[0].url, "/get-online-features?route_by=@0")
            pids = {"serve": serve.proc, "router": router.proc, "node a": nodes[0].proc,
                    "node b": nodes[1].proc}  # fmt: skip
            busy = {"serve": ["serve"], "router": ["router", "node a", "node b"],
                    "node a": ["node a"]}  # fmt: skip
            idle = {p: cpu_s(proc.pid) for p, proc in pids.items()}  # type: ignore[union-attr]
            time.sleep(3.0)
            idle = {p: (cpu_s(proc.pid) - idle[p]) / 3.0 for p, proc in pids.items()}  # type: ignore[union-attr]
            print("idle CPU (background threads), ms/s: "
                  + ", ".join(f"{p} {v * 1000:.0f}" for p, v in idle.items()))  # fmt: skip
            for entities in (1, 100):
                lat: dict[str, list[float]] = {name: [] for name in clients}
                cpu: dict[tuple[str, str], float] = {}
                targets = list(clients) if entities == 1 else ["serve", "router"]
                for r in range(rounds):
                    for name in targets:
                        keys = on_a if name == "node a" else everyone
                        before = {p: cpu_s(pids[p].pid) for p in busy[name]}  # type: ignore[union-attr]
                        t0 = time.perf_counter()
                        try:
                            lat[name] += segment(conns[name], keys, entities, seconds, r)
                        except RuntimeError as e:
                            logs = {"router": router.log, "node a": nodes[0].log}
                            tail = logs[name].read_text()[-3000:] if name in logs else ""
                            raise RuntimeError(f"{name}: {e}\n{tail}") from None
                        spent = time.perf_counter() - t0
                        for p, t in before.items():
                            used = cpu_s(pids[p].pid) - t - idle[p] * spent  # type: ignore[union-attr]
                            cpu[(name, p)] = cpu.get((name, p), 0.0) + used
                got = {name: summary(lat[name]) for name in targets}
                for name, g in got.items():
                    print(f"get-online-features {entities:>3} entities via {name:6}: "
                          f"{g['rps']:,.0f} req/s, p50 {g['p50']:.3f} ms, "
                          f"p99 {g['p99']:.3f} ms")  # fmt: skip
                    per = ", ".join(f"{p} {cpu[(name, p)] / len(lat[name]) * 1e6:.0f}"
                                    for p in busy[name])  # fmt: skip
                    print(f"    CPU per request, idle rate subtracted (us): {per}")
                hop = got["router"]["p50"] - got["serve"]["p50"]
                ratio = got["router"]["rps"] / got["serve"]["rps"]
                print(f"  hop at p50: {hop:+.3f} ms; router/serve req/s: {ratio:.2f}")
        finally:
            router.stop()
            serve.stop()
            for n in nodes:
                n.stop()


if __name__ == "__main__":
    main()
