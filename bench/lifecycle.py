"""Data-lifecycle benchmark: deleting entities (and, later, retention drops), one command.

`python bench/lifecycle.py` (`--quick`: 1M entities, 10k deletes; `--entities N --deletes M`).
Part "delete": a view of N int64 entities (one row each, 4 features, event times spread over
30 days, so 30 offline partitions), ingested through the FeatureStore, flushed and compacted.
Then, side by side in one run, three phases of the same length or of the operation's length:
- baseline: nothing but the load below;
- delete: `fs.delete` of M random entities: time until it returns (durable: log fsynced, sticky
  table saved, offline partitions rewritten, tombstones in the memtable);
- purge: `fs.compact()`: time until no sstable, Parquet file or live log segment holds them
  (checked after it: every Parquet file under the root is read for rows of deleted entities).
During every phase a reader thread times single-entity `get_online_features` calls (p50, p99)
and a writer thread ingests 10k-row batches of updates of surviving entities (rows/s).
`--modes staged,inline` runs the whole part once per mode, in that order, each on a store of
its own: `staged` is the store as it is (the offline rewrite is staged before the delete is
sequenced, off the writer's path); `inline` makes the offline rewrite happen inside the
in-order apply (the store's path without staging), to compare in the same sitting.
Prints the machine, the sizes, one JSON line per phase and a table. Each part is a function
`part_<name>(args) -> list[dict]`; parts register in PARTS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from offline import OfflineOptions  # noqa: E402
from store import FeatureStore  # noqa: E402

DAY = 86_400 * 10**9
T0 = 1_767_225_600 * 10**9  # 2026-01-01
TS = pa.timestamp("ns", tz="UTC")
DEFS = {
    "entities": [{"name": "user", "join_keys": ["user_id"], "dtype": "int64"}],
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


def batch(ids: np.ndarray, day: np.ndarray, shift: int = 0) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array(T0 + day * DAY + shift, TS),
            "f0": pa.array(ids.astype(np.float32)),
            "f1": pa.array(ids.astype(np.float64) / 7),
            "f2": pa.array(ids * 3),
            "tag": pa.array(np.char.add("t", (ids % 1000).astype(str)).astype(object)),
        }
    )


def load(fs: FeatureStore, n: int, rows: int = 200_000) -> float:
    t = time.perf_counter()
    for lo in range(0, n, rows):
        ids = np.arange(lo, min(n, lo + rows), dtype=np.int64)
        fs.ingest("stats", batch(ids, ids % 30))
    fs.flush()
    fs.compact()
    return time.perf_counter() - t


class Load:
    """Reader and writer threads running while `phase` holds; their measurements per phase."""

    def __init__(self, fs: FeatureStore, n: int, spared: np.ndarray) -> None:
        self.fs, self.n, self.spared = fs, n, spared
        self.stop = threading.Event()
        self.lat: list[int] = []
        self.rows = 0
        self.shift = 1

    def reader(self) -> None:
        rng = np.random.default_rng(1)
        while not self.stop.is_set():
            k = int(rng.integers(0, self.n))
            t = time.perf_counter_ns()
            self.fs.get_online_features(["stats:f0", "stats:tag"], {"user_id": [k]})
            self.lat.append(time.perf_counter_ns() - t)
            time.sleep(0.0005)

    def writer(self) -> None:
        rng = np.random.default_rng(2)
        while not self.stop.is_set():
            ids = rng.choice(self.spared, 10_000)
            self.shift += 1
            self.fs.ingest("stats", batch(ids, np.full(len(ids), 30), self.shift))
            self.rows += len(ids)

    def run(self, name: str, work: Callable[[], object] | None, seconds: float) -> dict:
        self.stop.clear()
        self.lat, self.rows = [], 0
        threads = [threading.Thread(target=self.reader), threading.Thread(target=self.writer)]
        for th in threads:
            th.start()
        t = time.perf_counter()
        if work is None:
            time.sleep(seconds)
        else:
            work()
        took = time.perf_counter() - t
        self.stop.set()
        for th in threads:
            th.join()
        lat = np.array(self.lat or [0]) / 1000
        return {
            "part": "delete",
            "phase": name,
            "seconds": round(took, 3),
            "online_p50_us": round(float(np.percentile(lat, 50)), 1),
            "online_p99_us": round(float(np.percentile(lat, 99)), 1),
            "online_calls": len(self.lat),
            "ingest_rows_per_s": round(self.rows / max(took, 1e-9)),
            "load_avg_1m": round(os.getloadavg()[0], 1),
        }


def deleted_rows_on_disk(root: Path, gone: np.ndarray) -> int:
    """Rows of deleted entities in any Parquet file under `root`, named or not."""
    import pyarrow.parquet as pq

    n = 0
    for p in root.rglob("*.parquet"):
        ids = pq.read_table(p, columns=["user_id"]).column(0).to_numpy()
        n += int(np.isin(ids, gone).sum())
    return n


def part_delete(args: argparse.Namespace) -> list[dict]:
    out = []
    for mode in args.modes.split(","):
        out += delete_run(args, mode)
    return out


def delete_run(args: argparse.Namespace, mode: str) -> list[dict]:
    root = Path(tempfile.mkdtemp(prefix=f"rh-lifecycle-{mode}-", dir=args.root))
    fs = FeatureStore(root, offline_options=OfflineOptions(buffer_rows=500_000))
    if mode == "inline":  # no staging: OfflineStore.delete rewrites inside the apply
        fs._off.prepare_delete = lambda view, entities: None  # type: ignore[method-assign]
        fs._off.discard_delete = lambda staged: None  # type: ignore[method-assign]
    try:
        fs.apply(DEFS)
        load_s = load(fs, args.entities)
        rng = np.random.default_rng(0)
        gone = np.sort(rng.choice(args.entities, args.deletes, replace=False))
        spared = np.setdiff1d(np.arange(args.entities), gone)
        lw = Load(fs, args.entities, spared)
        out = [lw.run("baseline", None, args.baseline_s)]
        result: dict = {}

        def delete() -> None:
            result.update(fs.delete("stats", {"user_id": gone.tolist()}))

        out.append(lw.run("delete", delete, 0))
        out[-1]["deleted"] = result["deleted"]
        out.append(lw.run("purge", fs.compact, 0))
        probe = gone[:1000].tolist()
        st = fs.get_online_features(["stats:f0"], {"user_id": probe}).statuses["f0"]
        assert set(st) == {"NOT_FOUND"}, "a deleted entity is still served"
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        for r in out:
            r.update(
                mode=mode, entities=args.entities, deletes=args.deletes, load_s=round(load_s, 1)
            )
        out[-1]["root_bytes_after"] = size
        out[-1]["deleted_rows_in_parquet_after"] = deleted_rows_on_disk(root, gone)
        return out
    finally:
        fs.close()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


PARTS: dict[str, Callable[[argparse.Namespace], list[dict]]] = {"delete": part_delete}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entities", type=int, default=10_000_000)
    ap.add_argument("--deletes", type=int, default=100_000)
    ap.add_argument("--baseline-s", type=float, default=5.0)
    ap.add_argument("--quick", action="store_true", help="1M entities, 10k deletes")
    ap.add_argument("--root", help="directory for the stores (default: the temp dir)")
    ap.add_argument("--modes", default="staged,inline", help="comma-separated: staged,inline")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ",".join(PARTS))
    args = ap.parse_args()
    if args.quick:
        args.entities, args.deletes = 1_000_000, 10_000
    print(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(),
                "load_avg": os.getloadavg(),
                "entities": args.entities,
                "deletes": args.deletes,
            }
        ),
        flush=True,
    )
    rows = []
    for name in args.parts.split(","):
        for r in PARTS[name](args):
            print(json.dumps(r), flush=True)
            rows.append(r)
    cols = [
        "part",
        "mode",
        "phase",
        "seconds",
        "online_p50_us",
        "online_p99_us",
        "ingest_rows_per_s",
    ]
    print("\n" + " | ".join(f"{c:>18}" for c in cols))
    for r in rows:
        print(" | ".join(f"{r.get(c, '')!s:>18}" for c in cols))


if __name__ == "__main__":
    main()
