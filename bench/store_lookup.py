"""Online serving benchmark: FeatureStore.get_online_features in process, against its floor and RocksDB.

One command: `python bench/store_lookup.py` (`--quick` for 100k entities, `--entities N`).
Data: 1M int64 entities, one row each, 8 features (4 float32, 2 float64, 2 int64), ingested through
the FeatureStore in 10k-row batches, then flushed and compacted (steady state: sstables, no
memtable), and the analyzer given its T_wait. Requests draw uniformly random stored entities
(fixed seed); each call is timed alone with perf_counter_ns after a warm-up.
Systems, same keys, one run:
- rickhouse get_online_features (the response object, values built lazily);
- rickhouse get_online_features + to_dict() (Python lists, what an in-process caller reads);
- rickhouse get_online_features + to_feast_json() (the server's JSON-ready dict);
- the online engine alone: LSMTree.get_many + the 8 value and validity arrays (the floor);
- RocksDB (rocksdict) multi_get of packed rows + numpy decode, same data (a point of scale).
Prints the machine, data sizes, one JSON line per system and call size, and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.feast_json import feast_json  # noqa: E402  (the server's wire JSON)
from store import FeatureStore  # noqa: E402
from store.keys import int_to_key  # noqa: E402

T0 = 1_767_225_600 * 10**9
TS = pa.timestamp("ns", tz="UTC")
FEATURES = [
    ("f0", "float32"),
    ("f1", "float32"),
    ("f2", "float32"),
    ("f3", "float32"),
    ("f4", "float64"),
    ("f5", "float64"),
    ("f6", "int64"),
    ("f7", "int64"),
]
REFS = [f"stats:{n}" for n, _ in FEATURES]
DEFS = {
    "entities": [{"name": "user", "join_keys": ["user_id"], "dtype": "int64"}],
    "feature_views": [
        {
            "name": "stats",
            "entities": ["user"],
            "features": [{"name": n, "dtype": t} for n, t in FEATURES],
        }
    ],
}
BATCH = 10_000


def batch(lo: int, hi: int, rng: np.random.Generator) -> pa.Table:
    n = hi - lo
    cols = {
        "user_id": pa.array(np.arange(lo, hi, dtype=np.int64) * 7 + 3),  # sparse ids
        "event_timestamp": pa.array(np.full(n, T0, dtype=np.int64), TS),
    }
    for name, dtype in FEATURES:
        if dtype == "float32":
            cols[name] = pa.array(rng.random(n, dtype=np.float32))
        elif dtype == "float64":
            cols[name] = pa.array(rng.random(n))
        else:
            cols[name] = pa.array(rng.integers(0, 1000, n))
    return pa.table(cols)


def load(fs: FeatureStore, entities: int) -> list[pa.Table]:
    rng = np.random.default_rng(1)
    out = []
    for lo in range(0, entities, BATCH):
        b = batch(lo, min(lo + BATCH, entities), rng)
        fs.ingest("stats", b)
        out.append(b)
    fs.flush()
    fs.compact()
    return out


def measure(call, requests: list, warm: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU (this thread) ns per call. On a shared machine the wall p99 includes time
    the scheduler gave to other processes; the CPU time is the call's own cost."""
    for r in requests[:warm]:
        call(r)
    wall = np.empty(len(requests) - warm, dtype=np.int64)
    cpu = np.empty(len(requests) - warm, dtype=np.int64)
    perf, thread = time.perf_counter_ns, time.thread_time_ns
    for i, r in enumerate(requests[warm:]):
        c = thread()
        t = perf()
        call(r)
        wall[i] = perf() - t
        cpu[i] = thread() - c
    return wall, cpu


def rocks_setup(root: str, batches: list[pa.Table]):
    from rocksdict import Options, Rdict, WriteBatch

    db = Rdict(str(Path(root) / "rocks"), Options(raw_mode=True))
    dtype = np.dtype(
        [("ev", "<i8")]
        + [
            (n, "<f4" if t == "float32" else "<f8" if t == "float64" else "<i8")
            for n, t in FEATURES
        ]
    )
    for b in batches:
        rec = np.empty(b.num_rows, dtype=dtype)
        rec["ev"] = b.column("event_timestamp").cast(pa.int64()).to_numpy()
        for n, _ in FEATURES:
            rec[n] = b.column(n).to_numpy()
        keys = int_to_key(b.column("user_id").to_numpy()).astype(">u8")
        wb = WriteBatch(raw_mode=True)
        raw = rec.tobytes()
        size = dtype.itemsize
        for i, k in enumerate(keys.tobytes()[j : j + 8] for j in range(0, 8 * len(keys), 8)):
            wb.put(k, raw[i * size : (i + 1) * size])
        db.write(wb)
    db.flush()

    def get(ids: np.ndarray) -> dict:
        keys = int_to_key(ids).astype(">u8")
        vals = db[[keys[i : i + 1].tobytes() for i in range(len(keys))]]
        rec = np.frombuffer(b"".join(vals), dtype=dtype)
        return {n: rec[n].tolist() for n, _ in FEATURES}

    return db, get


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--calls", type=int, default=20_000, help="timed calls of 1 entity")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    if args.quick:
        args.entities, args.calls = 100_000, 5_000
    mem = psutil.virtual_memory().total / 2**30
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        fs = FeatureStore(root)
        fs.apply(DEFS)
        t = time.perf_counter()
        batches = load(fs, args.entities)
        load_s = time.perf_counter() - t
        time.sleep(1.5)  # the analyzer's T_wait (1 s by default) before sstables may be learned
        tree = fs._snap.trees["stats"]  # the engine alone, for the floor
        rng = np.random.default_rng(2)
        ids = np.arange(args.entities, dtype=np.int64) * 7 + 3
        print(
            f"data: {args.entities} entities x {len(FEATURES)} features, loaded through ingest in "
            f"{load_s:.1f} s; calls: {args.calls} x 1 entity, {args.calls // 4} x 100 entities; "
            "uniform random stored keys"
        )
        db, rocks_get = rocks_setup(root, batches)

        def floor(r: list) -> list:
            res = tree.get_many(int_to_key(np.asarray(r, dtype=np.int64)))
            return [(res.values(n), res.valid(n)) for n, _ in FEATURES]

        systems = {
            "rickhouse get_online_features": lambda r: fs.get_online_features(REFS, {"user_id": r}),
            "rickhouse + to_dict()": lambda r: fs.get_online_features(
                REFS, {"user_id": r}
            ).to_dict(),
            "rickhouse + to_feast_json()": lambda r: feast_json(
                fs.get_online_features(REFS, {"user_id": r})
            ),
            "engine floor: get_many + values/valid": floor,
            "RocksDB multi_get + decode": lambda r: rocks_get(np.asarray(r, dtype=np.int64)),
        }
        rows = []
        for size, calls in ((1, args.calls), (100, args.calls // 4)):
            reqs = [ids[rng.integers(0, len(ids), size)].tolist() for _ in range(calls)]
            warm = min(1000, calls // 5)
            for name, call in systems.items():
                ns, cpu = measure(call, reqs, warm)
                res = {
                    "system": name,
                    "entities_per_call": size,
                    "calls": len(ns),
                    "p50_us": round(float(np.percentile(ns, 50)) / 1e3, 1),
                    "p99_us": round(float(np.percentile(ns, 99)) / 1e3, 1),
                    "mean_us": round(float(ns.mean()) / 1e3, 1),
                    "cpu_p50_us": round(float(np.percentile(cpu, 50)) / 1e3, 1),
                    "cpu_p99_us": round(float(np.percentile(cpu, 99)) / 1e3, 1),
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                }
                rows.append(res)
                print(json.dumps(res), flush=True)
        stats = tree.stats()
        print(
            json.dumps(
                {
                    "online_levels": [
                        (lv["level"], lv["sstables"], lv["keys"], lv["index_modes"])
                        for lv in stats["levels"]
                    ]
                }
            )
        )
        db.close()
        fs.close()
    print()
    print(
        f"{'system':38} {'keys/call':>9} {'p50 us':>8} {'p99 us':>9} {'mean us':>8} "
        f"{'cpu p50':>8} {'cpu p99':>8}"
    )
    for r in rows:
        print(
            f"{r['system']:38} {r['entities_per_call']:>9} {r['p50_us']:>8} {r['p99_us']:>9} "
            f"{r['mean_us']:>8} {r['cpu_p50_us']:>8} {r['cpu_p99_us']:>8}"
        )
    print("\ntargets: 1 entity p99 <= 100 us, 100 entities p99 <= 300 us (get_online_features)")


if __name__ == "__main__":
    main()
