"""Retention benchmark: drop a month of partitions from a large view while reads keep answering.

One command: `python bench/retention.py` (`--rows N`, default 100M; `--days D` of history,
default 60, of which the oldest 30 expire; `--data DIR` where the store is cached; smoke run:
`--rows 2000000`).
Data: one view keyed by an int64 entity, 2 features (float32, int64), N/D entities with one row
per entity per day, ingested through the FeatureStore in 1M-row batches, flushed and compacted
(one Parquet file per day). The store is built once and cached under the data directory.
Run: apply `retention: (D-30)d`, then `fs.compact()` drops the 30 oldest partitions (the
offline background thread is off, so the drop happens there and nowhere else; the snapshot
grace period, where the store has one, is 0 so that the files are deleted inside the timing).
Meanwhile two threads loop: online reads (100 keys per call) and point-in-time exports
(`get_historical_features`, 1000 entity rows in the retained range; the view's ttl is set to
3d for the run, so that a join reads the last days only, as a ttl-bounded training read does).
Their latencies for the calls that overlapped the drop or the `--after-s` seconds after it
(the drop itself is a metadata change: milliseconds) are compared with the same loops over the
`--baseline-s` seconds just before (p50/p99), and every error is counted.
Prints the machine, data sizes, JSON lines and a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from offline import OfflineOptions  # noqa: E402
from online import TreeOptions  # noqa: E402
from store import FeatureStore  # noqa: E402

DAY = 86_400 * 10**9
TS = pa.timestamp("ns", tz="UTC")
BATCH = 1_000_000
EXPIRE_DAYS = 30


def definitions(retention: str | None, ttl: str = "0") -> dict:
    v: dict = {
        "name": "events",
        "entities": ["user"],
        "ttl": ttl,
        "features": [{"name": "x", "dtype": "float32"}, {"name": "n", "dtype": "int64"}],
    }
    if retention:
        v["retention"] = retention
    return {
        "entities": [{"name": "user", "join_keys": ["user_id"], "dtype": "int64"}],
        "feature_views": [v],
    }


def offline_options() -> OfflineOptions:
    extra = {}
    if "snapshot_grace_s" in {f.name for f in dataclasses.fields(OfflineOptions)}:
        extra["snapshot_grace_s"] = 0.0
    return OfflineOptions(background=False, fsync=False, buffer_rows=4 * BATCH, **extra)


def open_store(root: Path) -> FeatureStore:
    return FeatureStore(root, tree_options=TreeOptions(), offline_options=offline_options())


def build(root: Path, rows: int, days: int, today: int) -> None:
    marker = root / "BUILT.json"
    want = {"rows": rows, "days": days, "today": today}
    if marker.exists() and json.loads(marker.read_text()) == want:
        return
    if root.exists():
        import shutil

        shutil.rmtree(root)
    per_day = rows // days
    started = time.perf_counter()
    with open_store(root) as fs:
        fs.apply(definitions(None))
        for d in range(days):
            t0 = (today - days + d) * DAY + 12 * 3600 * 10**9
            for lo in range(0, per_day, BATCH):
                n = min(BATCH, per_day - lo)
                ids = np.arange(lo, lo + n, dtype=np.int64)
                fs.ingest(
                    "events",
                    pa.table(
                        {
                            "user_id": ids,
                            "event_timestamp": pa.array(np.full(n, t0, np.int64)).cast(TS),
                            "x": pa.array(np.full(n, d, np.float32)),
                            "n": ids,
                        }
                    ),
                )
        fs.flush()
        fs.compact()
    marker.write_text(json.dumps(want))
    print(f"built {rows:,} rows over {days} days in {time.perf_counter() - started:.1f}s")


class Loop(threading.Thread):
    """Calls `op` until stopped, recording (start, latency) of each call."""

    def __init__(self, op) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.op, self.stop, self.samples = op, threading.Event(), []
        self.errors = 0

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                self.op()
            except Exception:  # noqa: BLE001 - counted: a read failing during the drop is the finding
                self.errors += 1
            self.samples.append((t, time.perf_counter() - t))

    def window(self, lo: float, hi: float) -> list[float]:
        """Latencies of the calls that overlapped [lo, hi)."""
        return [lat for t, lat in self.samples if t < hi and t + lat > lo]


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1e3, 3) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "rickhouse-bench")
    ap.add_argument("--baseline-s", type=float, default=10.0)
    ap.add_argument("--after-s", type=float, default=2.0)
    args = ap.parse_args()
    assert args.days > EXPIRE_DAYS, "--days must exceed the 30 expiring days"
    today = time.time_ns() // DAY
    root = args.data / f"retention-{args.rows}-{args.days}"
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()}")
    print(f"data: {args.rows:,} rows, {args.days} days, {args.rows // args.days:,} entities")
    build(root, args.rows, args.days, today)
    work = Path(tempfile.mkdtemp(prefix="retention-run-"))
    import shutil

    shutil.copytree(root, work / "root")  # every run drops from the same store
    fs = open_store(work / "root")
    per_day = args.rows // args.days
    rng = np.random.default_rng(7)
    recent = (today - 2) * DAY

    def online() -> None:
        fs.get_online_features(["events:x"], {"user_id": rng.integers(0, per_day, 100).tolist()})

    ents = pa.table(
        {
            "user_id": pa.array(rng.integers(0, per_day, 1000), pa.int64()),
            "event_timestamp": pa.array(np.full(1000, recent, np.int64)).cast(TS),
        }
    )

    def export() -> None:
        fs.get_historical_features(ents, ["events:x", "events:n"])

    before = fs.stats()["offline"]["events"]
    fs.apply(definitions(None, ttl="3d"))
    loops = [Loop(online), Loop(export)]
    for loop in loops:
        loop.start()
    time.sleep(2.0)  # warm up
    base_lo = time.perf_counter()
    time.sleep(args.baseline_s)
    fs.apply(definitions(f"{args.days - EXPIRE_DAYS}d", ttl="3d"))  # sets the retention only
    drop_lo = time.perf_counter()
    fs.compact()  # the drop
    drop_hi = time.perf_counter()
    time.sleep(args.after_s)
    for loop in loops:
        loop.stop.set()
        loop.join()
    after = fs.stats()["offline"]["events"]
    left = sum(1 for _ in (work / "root" / "offline" / "events").rglob("part-*.parquet"))
    result = {
        "bench": "retention_drop",
        "rows": args.rows,
        "days": args.days,
        "dropped_partitions": before["partitions"] - after["partitions"],
        "dropped_bytes": before["bytes"] - after["bytes"],
        "drop_s": round(drop_hi - drop_lo, 3),
        "parquet_files_left": left,
    }
    print(json.dumps(result))
    rows = []
    for name, loop in (("online_read_100", loops[0]), ("export_1000", loops[1])):
        base = loop.window(base_lo, base_lo + args.baseline_s)
        during = loop.window(drop_lo, drop_hi + args.after_s)
        line = {
            "bench": "retention_reads",
            "op": name,
            "errors": loop.errors,
            "calls_before": len(base),
            "calls_during": len(during),
            "p50_ms_before": pct(base, 50),
            "p99_ms_before": pct(base, 99),
            "p50_ms_during": pct(during, 50),
            "p99_ms_during": pct(during, 99),
        }
        print(json.dumps(line))
        rows.append(line)
    fs.close()
    shutil.rmtree(work, ignore_errors=True)
    print(
        f"\ndrop of {result['dropped_partitions']} partitions "
        f"({result['dropped_bytes'] / 2**20:.1f} MiB): {result['drop_s']} s"
    )
    print(
        f"{'op':<18}{'errors':>7}{'n before':>10}{'n during':>10}"
        f"{'p50 before':>12}{'p50 during':>12}{'p99 before':>12}{'p99 during':>12}"
    )
    for r in rows:
        print(
            f"{r['op']:<18}{r['errors']:>7}{r['calls_before']:>10}{r['calls_during']:>10}"
            f"{r['p50_ms_before']!s:>12}{r['p50_ms_during']!s:>12}"
            f"{r['p99_ms_before']!s:>12}{r['p99_ms_during']!s:>12}"
        )


if __name__ == "__main__":
    main()
