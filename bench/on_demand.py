"""On-demand feature overhead: a one-entity read with and without an on-demand feature.

One command: `python bench/on_demand.py` (`--quick`: fewer entities and calls; `--runs K`: K
in-process runs, each reported with the load average at its end, then their medians and the
quietest run, the one with the lowest plain p99; `--no-rest`: in process only).
Data: 100k int64 entities of a view `user_profile` (age int64, avg float64, country string),
flushed and compacted; an on-demand view `txn_risk` with the request field `amount`:
  amount_vs_avg = amount / nullif(avg, 0)          (float64)
  risky         = amount > 3 * avg or coalesce(age, 0) < 18   (bool)
Systems, same random entities, calls interleaved (A, B, C, C, B, A, ...) so drift hits all alike:
- plain:       get_online_features(["user_profile:avg", "user_profile:age"]) + to_dict()
- +on-demand:  the same two features + txn_risk:amount_vs_avg (the source view read once)
- +2 on-demand: the same + txn_risk:risky
In process each call is timed alone after a warm-up, by the wall clock (perf_counter_ns) and by
the calling thread's CPU time (thread_time_ns: load-independent, the time spent waiting for a
core left out; its own overhead, a system call, is paid alike by every system); over REST a
`rickhouse serve` subprocess answers one keep-alive httpx client, sequentially.
Prints the machine, one JSON line per system, and a table of p50/p99 and the added time.
On a loaded machine the p99 of a ~15 µs call is mostly time spent waiting for a core: compare
the added p50, the CPU-time columns and the quietest run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import FeatureStore  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
T0 = pd.Timestamp("2026-01-01", tz="UTC")
DEFS = {
    "entities": [{"name": "user", "join_keys": ["user_id"], "dtype": "int64"}],
    "feature_views": [
        {
            "name": "user_profile",
            "entities": ["user"],
            "features": [
                {"name": "age", "dtype": "int64"},
                {"name": "avg", "dtype": "float64"},
                {"name": "country", "dtype": "string"},
            ],
        }
    ],
    "on_demand_views": [
        {
            "name": "txn_risk",
            "sources": ["user_profile"],
            "request": [{"name": "amount", "dtype": "float64"}],
            "features": [
                {"name": "amount_vs_avg", "dtype": "float64", "expr": "amount / nullif(avg, 0)"},
                {
                    "name": "risky",
                    "dtype": "bool",
                    "expr": "amount > 3 * avg or coalesce(age, 0) < 18",
                },
            ],
        }
    ],
}
PLAIN = ["user_profile:avg", "user_profile:age"]
SYSTEMS = {
    "plain": PLAIN,
    "+on-demand": PLAIN + ["txn_risk:amount_vs_avg"],
    "+2 on-demand": PLAIN + ["txn_risk:amount_vs_avg", "txn_risk:risky"],
}


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "mem_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_avg": os.getloadavg(),
    }


def build(root: Path, n: int) -> None:
    rng = np.random.default_rng(1)
    with FeatureStore(root) as fs:
        fs.apply(DEFS)
        for lo in range(0, n, 50_000):
            ids = np.arange(lo, min(n, lo + 50_000))
            fs.ingest(
                "user_profile",
                {
                    "user_id": ids,
                    "event_timestamp": [T0] * len(ids),
                    "age": rng.integers(10, 90, len(ids)),
                    "avg": rng.normal(50, 20, len(ids)),
                    "country": rng.choice(["SE", "FI", "NO"], len(ids)).tolist(),
                },
            )
        fs.flush()
        fs.compact()


def stats(ns: list[int]) -> dict:
    a = np.asarray(ns) / 1000
    return {f"p{q}_us": round(float(np.percentile(a, q)), 2) for q in (50, 90, 99)}


def in_process(root: Path, n: int, calls: int) -> tuple[dict[str, dict], dict[str, dict]]:
    """Wall-clock and thread-CPU-time percentiles per system. The CPU time of the calling
    thread leaves out the time it waited for a core, which on a loaded machine is most of the
    tail; it still counts cache misses."""
    rng = np.random.default_rng(2)
    times: dict[str, list[int]] = {k: [] for k in SYSTEMS}
    cpu: dict[str, list[int]] = {k: [] for k in SYSTEMS}
    with FeatureStore(root) as fs:
        for warm in range(2000):
            for refs in SYSTEMS.values():
                fs.get_online_features(refs, {"user_id": [warm % n], "amount": [1.0]}).to_dict()
        users = rng.integers(0, n, calls).tolist()
        amounts = rng.normal(100, 50, calls).tolist()
        clock, thread_clock = time.perf_counter_ns, time.thread_time_ns
        order = list(SYSTEMS.items())
        for u, x in zip(users, amounts, strict=True):
            order.reverse()  # each system goes first, last and in between alike
            for name, refs in order:
                ents = {"user_id": [u], "amount": [x]}
                c = thread_clock()
                t = clock()
                fs.get_online_features(refs, ents).to_dict()
                t = clock() - t
                cpu[name].append(thread_clock() - c)
                times[name].append(t)
    return {k: stats(v) for k, v in times.items()}, {k: stats(v) for k, v in cpu.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest(root: Path, n: int, calls: int) -> dict[str, dict]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RICKHOUSE_")}
    cmd = [str(REPO / ".venv" / "bin" / "rickhouse"), "serve", "--root", str(root)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get(url + "/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit("server did not become healthy")
                time.sleep(0.2)
            rng = np.random.default_rng(3)
            times: dict[str, list[int]] = {k: [] for k in SYSTEMS}
            bodies = {
                name: [
                    json.dumps(
                        {"features": refs, "entities": {"user_id": [int(u)], "amount": [float(x)]}}
                    ).encode()
                    for u, x in zip(
                        rng.integers(0, n, calls + 500),
                        rng.normal(100, 50, calls + 500),
                        strict=True,
                    )
                ]
                for name, refs in SYSTEMS.items()
            }
            headers = {"content-type": "application/json"}
            clock = time.perf_counter_ns
            order = list(SYSTEMS)
            for i in range(calls + 500):
                order.reverse()  # each system goes first, last and in between alike
                for name in order:
                    t = clock()
                    r = client.post(
                        url + "/get-online-features", content=bodies[name][i], headers=headers
                    )
                    dt = clock() - t
                    assert r.status_code == 200, r.text
                    if i >= 500:
                        times[name].append(dt)
        return {k: stats(v) for k, v in times.items()}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def added(by_system: dict[str, dict], q: int) -> dict[str, float]:
    """Per system, its p`q` minus the plain read's, in µs."""
    base = by_system["plain"][f"p{q}_us"]
    return {k: round(s[f"p{q}_us"] - base, 2) for k, s in by_system.items() if k != "plain"}


def runs_summary(runs: list[tuple[dict, dict, tuple]]) -> None:
    """One line per in-process run (added p50/p99, wall and CPU; load average), then the
    medians over the runs and the quietest run (lowest plain wall p99)."""
    print(
        "\n| run | load (1 min) | plain p50 / p99 µs | added p50 µs | added p99 µs | added CPU p99 µs |"
    )
    print("|---|---|---|---|---|---|")
    for i, (wall, cpu, load) in enumerate(runs):
        plain = wall["plain"]
        a50, a99, c99 = added(wall, 50), added(wall, 99), added(cpu, 99)
        fmt = lambda d: " / ".join(f"{v:+.1f}" for v in d.values())  # noqa: E731
        print(
            f"| {i + 1} | {load[0]:.1f} | {plain['p50_us']} / {plain['p99_us']} | {fmt(a50)} "
            f"| {fmt(a99)} | {fmt(c99)} |"
        )
    systems = [k for k in SYSTEMS if k != "plain"]
    for q in (50, 99):
        med = {k: float(np.median([added(w, q)[k] for w, _, _ in runs])) for k in systems}
        print(f"# median over {len(runs)} runs, added wall p{q} µs: {json.dumps(med)}")
    quiet = min(runs, key=lambda r: r[0]["plain"]["p99_us"])
    print(
        f"# quietest run (load {quiet[2][0]:.1f}): added wall p50 {json.dumps(added(quiet[0], 50))}"
        f", p99 {json.dumps(added(quiet[0], 99))}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=1, help="in-process runs (default 1)")
    ap.add_argument("--no-rest", action="store_true", help="skip the REST measurement")
    args = ap.parse_args()
    n = 20_000 if args.quick else 100_000
    calls = 3_000 if args.quick else 20_000
    rest_calls = 500 if args.quick else 3_000
    print(f"# machine: {json.dumps(machine())}")
    print(f"# data: {n} entities; {calls} in-process calls, {rest_calls} REST calls per system")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        build(root, n)
        runs = []
        for _ in range(max(1, args.runs)):
            wall, cpu = in_process(root, n, calls)
            runs.append((wall, cpu, os.getloadavg()))
        wall, cpu, _ = runs[-1]
        results = {"in_process": wall, "in_process_cpu": cpu}
        if not args.no_rest:
            results["rest"] = rest(root, n, rest_calls)
    for where, by_system in results.items():
        for name, s in by_system.items():
            print(json.dumps({"bench": "on_demand", "where": where, "system": name, **s}))
    print("\n| where | system | p50 µs | p90 µs | p99 µs | added p50 | added p90 | added p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for where, by_system in results.items():
        base = by_system["plain"]
        for name, s in by_system.items():
            added = " | ".join(f"{s[f'p{q}_us'] - base[f'p{q}_us']:+.1f}" for q in (50, 90, 99))
            row = f"{s['p50_us']} | {s['p90_us']} | {s['p99_us']}"
            print(f"| {where} | {name} | {row} | {added} |")
    if len(runs) > 1:
        runs_summary(runs)
    print(f"\n# load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
