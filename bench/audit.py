"""Audit benchmark: FeatureStore.audit() of one large view, wall time, entities/s and peak RSS.

One command: `python bench/audit.py` (`--entities N`, default 50M; `--key string` for a
string-keyed view; `--data DIR` to choose where the store is cached).
Data: one view of N entities (int64 ids, or their text for `--key string`), 4 features
(float32, float64, int64, a short string), one row per entity plus a second version for 10%
of them, ingested through the FeatureStore in 1M-row batches, then flushed. The store is built
once and cached under the data directory (printed; reused when it holds the same N and key).
The audit runs in a fresh child process (open, then audit, timed alone) whose RSS is sampled
every 20 ms with psutil; the peak is reported, with the RSS right after opening and the peak
of anonymous memory (RSS minus file-backed pages: the online sstables are memory-mapped, and
the pages a scan touches count in RSS until the mapping drops them).
Prints the machine, data sizes, one JSON line and a table. Target: 50M entities at peak RSS
<= 1 GB and >= 500k entities/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import FeatureStore  # noqa: E402

T0 = 1_767_225_600 * 10**9
TS = pa.timestamp("ns", tz="UTC")
BATCH = 1_000_000
UPDATED = 0.1  # share of entities that get a second, newer version


def defs(key: str) -> dict:
    return {
        "entities": [{"name": "user", "join_keys": ["user_id"], "dtype": key}],
        "feature_views": [
            {
                "name": "stats",
                "entities": ["user"],
                "features": [
                    {"name": "f0", "dtype": "float32"},
                    {"name": "f1", "dtype": "float64"},
                    {"name": "f2", "dtype": "int64"},
                    {"name": "tag", "dtype": "string"},
                ],
            }
        ],
    }


def batch(ids: np.ndarray, key: str, version: int, rng: np.random.Generator) -> pa.Table:
    n = len(ids)
    user = pa.array(ids * 7 + 3)
    return pa.table(
        {
            "user_id": user if key == "int64" else user.cast(pa.string()),
            "event_timestamp": pa.array(
                T0 + version * 10**9 + rng.integers(0, 10**9, n, dtype=np.int64), TS
            ),
            "f0": pa.array(rng.random(n, dtype=np.float32)),
            "f1": pa.array(rng.random(n)),
            "f2": pa.array(rng.integers(0, 1000, n)),
            "tag": pa.array(np.char.add("t", (ids % 1000).astype(str))),
        }
    )


def build(root: Path, entities: int, key: str) -> float:
    started = time.perf_counter()
    rng = np.random.default_rng(1)
    fs = FeatureStore(root)
    fs.apply(defs(key))
    for lo in range(0, entities, BATCH):
        fs.ingest("stats", batch(np.arange(lo, min(entities, lo + BATCH)), key, 0, rng))
    updated = rng.choice(entities, int(entities * UPDATED), replace=False)
    for lo in range(0, len(updated), BATCH):
        fs.ingest("stats", batch(np.sort(updated[lo : lo + BATCH]), key, 1, rng))
    fs.flush()
    fs.close()
    return time.perf_counter() - started


def measure(root: Path) -> None:
    """Child process: open the store, audit it, print one JSON object."""
    proc = psutil.Process()
    fs = FeatureStore(root)
    opened_rss = proc.memory_info().rss
    peak = [opened_rss, 0]  # RSS, and anonymous RSS (RSS minus file-backed pages)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            m = proc.memory_info()
            peak[0] = max(peak[0], m.rss)
            peak[1] = max(peak[1], m.rss - m.shared)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    cpu0 = proc.cpu_times()
    report = fs.audit()["stats"]
    wall = time.perf_counter() - started
    cpu1 = proc.cpu_times()
    done.set()
    sampler.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    fs.close()
    print(
        json.dumps(
            {
                "wall_s": wall,
                # CPU seconds of every thread (DuckDB's too): on a shared machine, wall time
                # measures the load as much as the audit
                "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
                "entities": report["entities"],
                "online_entities": report["online_entities"],
                "mismatches": report["mismatches"],
                "opened_rss_mb": opened_rss / 2**20,
                "peak_rss_mb": peak[0] / 2**20,
                "peak_anon_mb": peak[1] / 2**20,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=50_000_000)
    ap.add_argument("--key", choices=["int64", "string"], default="int64")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "rickhouse-bench")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child's mode
    args = ap.parse_args()
    if args.measure:
        measure(args.measure)
        return
    mem = psutil.virtual_memory().total / 2**30
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, {mem:.0f} GiB, "
        f"Python {platform.python_version()}"
    )
    root = args.data / f"audit-{args.key}-{args.entities}"
    marker = root / "BUILT"
    build_s = None
    if not marker.exists():
        print(f"building {args.entities:,} entities ({args.key} keys) in {root} ...", flush=True)
        build_s = build(root, args.entities, args.key)
        marker.write_text(str(args.entities))
    rows = args.entities + int(args.entities * UPDATED)
    print(f"data: {root} (view 'stats', {args.entities:,} entities, {rows:,} rows)", flush=True)
    out = subprocess.run(
        [sys.executable, __file__, "--measure", str(root)],
        check=True,
        capture_output=True,
        text=True,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res |= {
        "bench": "audit",
        "key": args.key,
        "entities_per_s": res["entities"] / res["wall_s"],
        "entities_per_cpu_s": res["entities"] / res["cpu_s"],
        "load_avg_1m": os.getloadavg()[0],
        "build_s": build_s,
    }
    print(json.dumps(res), flush=True)
    print()
    print(
        f"{'key':<8}{'entities':>14}{'mismatches':>12}{'wall s':>9}{'entities/s':>13}"
        f"{'CPU s':>8}{'entities/CPU s':>16}"
        f"{'RSS open MB':>13}{'peak RSS MB':>13}{'peak anon MB':>14}"
    )
    print(
        f"{args.key:<8}{res['entities']:>14,}{res['mismatches']:>12}{res['wall_s']:>9.1f}"
        f"{res['entities_per_s']:>13,.0f}{res['cpu_s']:>8.1f}{res['entities_per_cpu_s']:>16,.0f}"
        f"{res['opened_rss_mb']:>13.0f}{res['peak_rss_mb']:>13.0f}"
        f"{res['peak_anon_mb']:>14.0f}"
    )
    print("\ntarget: 50M entities at peak RSS <= 1024 MB and >= 500,000 entities/s")


if __name__ == "__main__":
    main()
