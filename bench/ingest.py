"""Durable ingest benchmark: FeatureStore.ingest into both stores, against RocksDB and its parts.

One command: `python bench/ingest.py` (`--quick` for a smoke run, `--batches N`).
Data: batches of 10,000 rows x 10 features (4 float32, 2 float64, 2 int64, 1 string, 1 bool)
for int64 entities drawn from 1M, event times increasing; every system gets the same batches.
Systems, each in a fresh directory on the same disk, measured in one run after a warm-up:
- rickhouse: `FeatureStore.ingest` — validate, commit log append + fdatasync, online LSM write,
  offline buffer append (Parquet flushes by size/age in the background), acknowledged per batch.
- its parts alone: batch validation/conversion; commit log append + fdatasync; online
  `LSMTree.write`; offline `OfflineStore.append`.
- RocksDB (rocksdict): one WriteBatch of packed rows per batch, `sync=True` — a durable KV store
  doing the online half only (no offline copy), for scale.
Prints the machine, the data sizes, one JSON line per system and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from offline import OfflineStore  # noqa: E402
from online import Field, LSMTree  # noqa: E402
from store import FeatureStore  # noqa: E402
from store.batch import convert_batch, store_schema  # noqa: E402
from store.commitlog import CommitLog  # noqa: E402
from store.keys import int_to_key  # noqa: E402

ROWS = 10_000
ENTITIES = 1_000_000
T0 = 1_767_225_600 * 10**9  # 2026-01-01 UTC
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
    ("f8", "string"),
    ("f9", "bool"),
]
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


def make_batches(n: int, seed: int = 7) -> list[pa.Table]:
    rng = np.random.default_rng(seed)
    words = pa.array([f"country{i:03d}" for i in range(200)])
    out = []
    for b in range(n):
        cols = {
            "user_id": pa.array(rng.integers(0, ENTITIES, ROWS)),
            "event_timestamp": pa.array(T0 + b * 10**9 + np.arange(ROWS), TS),
        }
        for name, dtype in FEATURES:
            if dtype == "float32":
                cols[name] = pa.array(rng.random(ROWS, dtype=np.float32))
            elif dtype == "float64":
                cols[name] = pa.array(rng.random(ROWS))
            elif dtype == "int64":
                cols[name] = pa.array(rng.integers(0, 1000, ROWS))
            elif dtype == "string":
                cols[name] = words.take(pa.array(rng.integers(0, 200, ROWS)))
            else:
                cols[name] = pa.array(rng.random(ROWS) < 0.5)
        out.append(pa.table(cols))
    return out


def timed(batches: list[pa.Table], warm: int, step) -> list[float]:
    """Run `step(i, batch)` for every batch; seconds per batch after the first `warm`."""
    times = []
    for i, b in enumerate(batches):
        t = time.perf_counter()
        step(i, b)
        if i >= warm:
            times.append(time.perf_counter() - t)
    return times


CLOSE_S: dict[str, float] = {}


def run_feature_store(batches, warm, root) -> list[float]:
    fs = FeatureStore(root)
    fs.apply(DEFS)
    try:
        return timed(batches, warm, lambda i, b: fs.ingest("stats", b))
    finally:
        t = time.perf_counter()
        fs.close()  # flushes the memtable and the offline buffer to Parquet
        CLOSE_S["rickhouse"] = time.perf_counter() - t


def run_feature_store_threads(batches, warm, root, threads: int = 2) -> list[float]:
    """`threads` callers ingesting at once (as the server does): group commit shares fsyncs and
    one batch's fsync overlaps another's apply. Returns wall time per batch, spread evenly."""
    import threading

    fs = FeatureStore(root)
    fs.apply(DEFS)
    try:
        for b in batches[:warm]:
            fs.ingest("stats", b)
        todo = batches[warm:]

        def worker(k: int) -> None:
            for b in todo[k::threads]:
                fs.ingest("stats", b)

        workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        t = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wall = time.perf_counter() - t
        return [wall / len(todo)] * len(todo)
    finally:
        fs.close()


def view():
    from store.definitions import Definitions

    return Definitions.from_dict(DEFS).feature_views["stats"]


def run_convert(batches, warm, root) -> list[float]:
    v = view()
    return timed(batches, warm, lambda i, b: convert_batch(v, b))


def _converted(batches):
    v = view()
    out = []
    for b in batches:
        t, _ = convert_batch(v, b)
        created = pa.array(np.full(t.num_rows, T0, dtype=np.int64)).cast(TS)
        out.append(
            t.set_column(
                t.schema.get_field_index("created_timestamp"), "created_timestamp", created
            )
        )
    return out


def run_commitlog(batches, warm, root) -> list[float]:
    log = CommitLog(Path(root) / "commitlog")
    list(log.recover())
    conv = _converted(batches)

    def step(i, b):
        log.append(i + 1, "stats", conv[i])
        log.sync(i + 1)

    try:
        return timed(batches, warm, step)
    finally:
        log.close()


def run_online(batches, warm, root) -> list[float]:
    tree = LSMTree(Path(root) / "online", [Field(n, t) for n, t in FEATURES])
    conv = _converted(batches)
    names = [n for n, _ in FEATURES]

    def step(i, b):
        t = conv[i]
        tree.write(
            i + 1,
            int_to_key(t.column("user_id").to_numpy()),
            t.column("event_timestamp").cast(pa.int64()).to_numpy(),
            t.column("created_timestamp").cast(pa.int64()).to_numpy(),
            t.select(names),
        )

    try:
        return timed(batches, warm, step)
    finally:
        tree.close()


def run_offline(batches, warm, root) -> list[float]:
    off = OfflineStore(root)
    off.register_view("stats", store_schema(view()), ["user_id"])
    conv = _converted(batches)
    try:
        return timed(batches, warm, lambda i, b: off.append("stats", conv[i], i + 1))
    finally:
        off.close()


def run_rocksdb(batches, warm, root) -> list[float]:
    from rocksdict import Options, Rdict, WriteBatch, WriteOptions

    opts = Options(raw_mode=True)
    db = Rdict(str(Path(root) / "rocks"), opts)
    wo = WriteOptions()
    wo.sync = True
    conv = _converted(batches)
    dtype = np.dtype(
        [("ev", "<i8"), ("cr", "<i8")]
        + [
            (
                n,
                "<f4"
                if t == "float32"
                else "<f8"
                if t == "float64"
                else "<i8"
                if t == "int64"
                else "?",
            )
            for n, t in FEATURES
            if t != "string"
        ]
    )

    def step(i, b):
        t = conv[i]
        rec = np.empty(t.num_rows, dtype=dtype)
        rec["ev"] = t.column("event_timestamp").cast(pa.int64()).to_numpy()
        rec["cr"] = t.column("created_timestamp").cast(pa.int64()).to_numpy()
        for n, ty in FEATURES:
            if ty != "string":
                rec[n] = t.column(n).to_numpy()
        keys = int_to_key(
            t.column("user_id").to_numpy()
        ).byteswap()  # big-endian: byte order = key order
        strings = t.column("f8").to_pylist()
        wb = WriteBatch(raw_mode=True)
        for k, r, s in zip(
            keys.tobytes_list() if hasattr(keys, "tobytes_list") else [k.tobytes() for k in keys],
            rec,
            strings,
            strict=True,
        ):
            wb.put(k, r.tobytes() + s.encode())
        db.write(wb, wo)

    try:
        return timed(batches, warm, step)
    finally:
        db.close()


SYSTEMS = {
    "rickhouse ingest (log+online+offline)": run_feature_store,
    "rickhouse ingest, 2 concurrent callers": run_feature_store_threads,
    "  part: validate/convert": run_convert,
    "  part: commit log append+fdatasync": run_commitlog,
    "  part: online LSMTree.write": run_online,
    "  part: offline append": run_offline,
    "RocksDB WriteBatch sync=True (online only)": run_rocksdb,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir on /tmp)")
    args = ap.parse_args()
    if args.quick:
        args.batches, args.warmup = 12, 2
    mem = psutil.virtual_memory().total / 2**30
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"
    )
    print(
        f"data: {args.batches} batches x {ROWS} rows x {len(FEATURES)} features, {ENTITIES} entities; warm-up {args.warmup} batches (excluded)"
    )
    batches = make_batches(args.batches + args.warmup)
    results = []
    for name, fn in SYSTEMS.items():
        with tempfile.TemporaryDirectory(dir=args.dir) as root:
            times = fn(batches, args.warmup, root)
        rows = ROWS * len(times)
        res = {
            "system": name.strip(),
            "rows": rows,
            "rows_per_s": round(rows / sum(times)),
            "batch_ms_p50": round(statistics.median(times) * 1e3, 2),
            "batch_ms_p99": round(float(np.percentile(times, 99)) * 1e3, 2),
            "rss_mib": round(psutil.Process().memory_info().rss / 2**20),
        }
        results.append((name, res))
        print(json.dumps(res), flush=True)
    print()
    print(f"{'system':45} {'rows/s':>12} {'batch p50 ms':>13} {'batch p99 ms':>13}")
    for name, r in results:
        print(f"{name:45} {r['rows_per_s']:>12,} {r['batch_ms_p50']:>13} {r['batch_ms_p99']:>13}")
    main_rate = results[0][1]["rows_per_s"]
    print(f"\nrickhouse durable ingest: {main_rate:,} rows/s (target >= 300,000)")
    rows = results[0][1]["rows"]
    total = rows / main_rate + CLOSE_S.get("rickhouse", 0.0)
    print(
        f"close() afterwards (memtable + offline buffer to Parquet): {CLOSE_S.get('rickhouse', 0):.2f} s; "
        f"counting it, {rows / total:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()
