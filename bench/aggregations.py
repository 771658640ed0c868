"""Benchmark of aggregation views: durable ingest, online reads, export vs DuckDB, memory.

One command: `python bench/aggregations.py` (`--quick`: 1M events, 100k entity rows).
The view is the issue's example: user_txn with events (amount float64, merchant string) and the
aggregates amount sum 1h/1d/7d, count 1d/7d, mean 7d, max 1d, stddev 7d, merchant last 7d
(9 features). Events: --events (10M) over --users (100k) users and 30 days, times in order
within a batch of 50k but batches shuffled within each day (late arrivals), 5% null amounts.
Measured in one run:
- durable ingest of the events through FeatureStore.ingest (each batch fsynced), events/s; the
  first fifth of the batches goes alternately into the aggregation view and a plain view with
  the same columns (ratio aggregation / plain, same conditions);
- get_online_features of one random user, all 9 aggregates, in process (p50/p99 over 20k
  calls, each timed alone), and a plain view's one-entity read in the same run (ratio);
- export of the 9 features for --rows (1M) entity rows (random users, T random over the last 20
  days) with export_training, vs the plain DuckDB query over the same Parquet files: the window
  aggregates `... OVER (PARTITION BY user_id ORDER BY ts RANGE BETWEEN w - 1ns PRECEDING AND
  CURRENT ROW)` over events UNION the entity rows, filtered to the entity rows; both results
  compared value by value (floats within 1e-9 relative);
- memory: the online event state's bytes per event and per entity, the offline Parquet bytes per
  event. Windows cost nothing per window: the state holds events, aggregates are computed at read.
- REST: `rickhouse serve` on the store (free 127.0.0.1 port), --rest-requests (3,000) sequential
  keep-alive POST /get-online-features of 1 entity each (httpx) for the aggregation view (its 9
  aggregates) and for a plain view of 9 stored features, interleaved: req/s, p50, p99, ratio.
Prints the machine, one JSON line per measurement and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import FeatureStore  # noqa: E402

DAY = 86_400 * 10**9
# the events span the 30 days before today, so online reads (at the request time) see full windows
T0 = (time.time_ns() // DAY - 30) * DAY
HOUR = 3_600 * 10**9
TS = pa.timestamp("ns", tz="UTC")
EVENTS = [{"name": "amount", "dtype": "float64"}, {"name": "merchant", "dtype": "string"}]
AGGS = [
    {"column": "amount", "function": "sum", "windows": ["1h", "1d", "7d"]},
    {"column": "amount", "function": "count", "windows": ["1d", "7d"]},
    {"column": "amount", "function": "mean", "windows": ["7d"]},
    {"column": "amount", "function": "max", "windows": ["1d"]},
    {"column": "amount", "function": "stddev", "windows": ["7d"]},
    {"column": "merchant", "function": "last", "windows": ["7d"]},
]
NAMES = [
    "amount_sum_1h", "amount_sum_1d", "amount_sum_7d", "amount_count_1d", "amount_count_7d",
    "amount_mean_7d", "amount_max_1d", "amount_stddev_7d", "merchant_last_7d",
]  # fmt: skip
PLAIN9 = [{"name": f"f{i}", "dtype": "float64"} for i in range(len(NAMES))]  # as many features
DEFS = {
    "entities": [{"name": "user", "join_keys": ["user_id"]}],
    "feature_views": [
        {"name": "user_txn", "entities": ["user"], "events": EVENTS, "aggregations": AGGS},
        {"name": "plain_txn", "entities": ["user"], "features": EVENTS},
        {"name": "plain9", "entities": ["user"], "features": PLAIN9},
    ],
}
BATCH = 50_000
MERCHANTS = np.array([f"m{i:03d}" for i in range(500)], dtype=object)


def emit(kind: str, **fields: object) -> dict:
    rec = {"bench": "aggregations", "what": kind, **fields}
    print(json.dumps(rec), flush=True)
    return rec


def batches(n: int, users: int, rng: np.random.Generator) -> list[pa.Table]:
    """n events over 30 days in batches of BATCH, shuffled within each day (late arrivals)."""
    span = 30 * DAY
    per_day = max(1, (n // BATCH) // 30)
    out = []
    order = []
    nb = (n + BATCH - 1) // BATCH
    for d in range(0, nb, per_day):
        day = list(range(d, min(nb, d + per_day)))
        rng.shuffle(day)
        order += day
    for b in order:
        lo, hi = b * BATCH, min(n, (b + 1) * BATCH)
        m = hi - lo
        ts = T0 + np.sort(rng.integers(lo * span // n, hi * span // n, m))
        amount = rng.gamma(2.0, 30.0, m).round(2)
        mask = rng.random(m) < 0.05
        out.append(
            pa.table(
                {
                    "user_id": pa.array(rng.integers(0, users, m)),
                    "event_timestamp": pa.array(ts).cast(TS),
                    "amount": pa.array(amount, mask=mask),
                    "merchant": pa.array(MERCHANTS[rng.integers(0, len(MERCHANTS), m)]),
                }
            )
        )
    return out


def ingest(fs: FeatureStore, view: str, data: list[pa.Table]) -> float:
    t = time.perf_counter()
    for b in data:
        fs.ingest(view, b)
    return time.perf_counter() - t


def latency(call, n: int) -> tuple[float, float]:
    for _ in range(200):
        call()
    times = np.empty(n)
    for i in range(n):
        t = time.perf_counter_ns()
        call()
        times[i] = time.perf_counter_ns() - t
    return float(np.percentile(times, 50) / 1e3), float(np.percentile(times, 99) / 1e3)


def duckdb_export(files: list[str], rows: pa.Table) -> tuple[pa.Table, float]:
    """The plain DuckDB window query over the Parquet files: (result in row order, seconds)."""
    con = duckdb.connect()
    con.register("rows", rows)
    w = {"1h": HOUR, "1d": DAY, "7d": 7 * DAY}
    frames = ", ".join(
        f"w{k} AS (PARTITION BY user_id ORDER BY ts RANGE BETWEEN {v - 1} PRECEDING AND CURRENT ROW)"
        for k, v in w.items()
    )
    key = "CASE WHEN merchant IS NOT NULL THEN {'t': ts, 'c': cr, 's': sq, 'r': rw} END"
    sql = f"""
    WITH ev AS (
        SELECT user_id, epoch_ns(event_timestamp) AS ts, epoch_ns(created_timestamp) AS cr,
               _seq AS sq, _row AS rw, amount, merchant, 1 AS is_event, NULL::BIGINT AS rid
        FROM read_parquet({files!r})
        UNION ALL
        SELECT user_id, epoch_ns(event_timestamp), NULL, NULL, NULL, NULL, NULL, NULL, rid
        FROM rows
    ), agg AS (
        SELECT rid,
          sum(amount) OVER w1h AS amount_sum_1h, sum(amount) OVER w1d AS amount_sum_1d,
          sum(amount) OVER w7d AS amount_sum_7d,
          coalesce(count(is_event) OVER w1d, 0) AS amount_count_1d,
          coalesce(count(is_event) OVER w7d, 0) AS amount_count_7d,
          avg(amount) OVER w7d AS amount_mean_7d, max(amount) OVER w1d AS amount_max_1d,
          stddev_samp(amount) OVER w7d AS amount_stddev_7d,
          arg_max(merchant, {key}) OVER w7d AS merchant_last_7d
        FROM ev
        WINDOW {frames}
        QUALIFY rid IS NOT NULL
    )
    SELECT * FROM agg ORDER BY rid
    """
    t = time.perf_counter()
    out = con.sql(sql).to_arrow_table()
    return out, time.perf_counter() - t


def compare(ours: pa.Table, theirs: pa.Table) -> int:
    bad = 0
    for name in NAMES:
        a = ours.column(name).to_numpy(zero_copy_only=False)
        b = theirs.column(name).to_numpy(zero_copy_only=False)
        if name == "merchant_last_7d":
            bad += int(sum(x != y for x, y in zip(a.tolist(), b.tolist(), strict=True)))
            continue
        a, b = a.astype(float), b.astype(float)
        both_nan = np.isnan(a) & np.isnan(b)
        ok = both_nan | np.isclose(a, b, rtol=1e-9, atol=1e-9)
        bad += int((~ok).sum())
    return bad


def rest_compare(root: Path, users: np.ndarray, n: int) -> dict:
    """`rickhouse serve` on `root` (free loopback port): `n` sequential keep-alive POSTs
    /get-online-features of 1 entity for the aggregation view (all 9 aggregates) and for plain9
    (9 stored features), interleaved; req/s, p50, p99 of each and the ratio."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = shutil.which("rickhouse", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "app.cli"]
    cmd += ["serve", "--root", str(root), "--host", "127.0.0.1", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RICKHOUSE_")}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}/get-online-features"
    bodies = {
        "aggregation": [f"user_txn:{f}" for f in NAMES],
        "plain": [f"plain9:{f['name']}" for f in PLAIN9],
    }
    try:
        with httpx.Client(timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("rickhouse serve did not become healthy")
                time.sleep(0.2)
            times: dict[str, list[int]] = {k: [] for k in bodies}
            for i in range(200 + n):  # the first 200 rounds warm up
                for kind, refs in bodies.items():
                    body = {"entities": {"user_id": [int(users[i % len(users)])]}, "features": refs}
                    t = time.perf_counter_ns()
                    r = client.post(url, json=body)
                    dt = time.perf_counter_ns() - t
                    if r.status_code != 200:
                        raise RuntimeError(f"{kind}: HTTP {r.status_code}: {r.text[:300]}")
                    if i >= 200:
                        times[kind].append(dt)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    out: dict[str, float] = {}
    for kind, ts in times.items():
        a = np.array(ts)
        out[f"{kind}_req_per_s"] = round(len(a) / (a.sum() / 1e9))
        out[f"{kind}_p50_us"] = round(float(np.percentile(a, 50)) / 1e3)
        out[f"{kind}_p99_us"] = round(float(np.percentile(a, 99)) / 1e3)
    out["ratio"] = round(out["aggregation_req_per_s"] / out["plain_req_per_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--rest-requests", type=int, default=3_000, help="per view, 0: skip")
    args = ap.parse_args()
    if args.quick:
        args.events, args.rows = 1_000_000, 100_000
    load = os.getloadavg()
    emit("machine", cpus=os.cpu_count(), python=platform.python_version(), loadavg=load)
    rng = np.random.default_rng(1)
    data = batches(args.events, args.users, rng)
    results = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        fs = FeatureStore(Path(tmp) / "root")
        fs.apply(DEFS)
        # the first fifth of the batches into both views, alternating (same conditions), then
        # the rest into the aggregation view
        fs.ingest("plain_txn", data[0].slice(0, 10))
        fs.ingest("user_txn", data[0].slice(0, 10))  # warm-up (compilation)
        k = max(1, len(data) // 5)
        plain_s = agg_head_s = 0.0
        for b in data[:k]:
            plain_s += ingest(fs, "plain_txn", [b])
            agg_head_s += ingest(fs, "user_txn", [b])
        head_rows = sum(b.num_rows for b in data[:k])
        agg_s = agg_head_s + ingest(fs, "user_txn", data[k:])
        results.append(emit("ingest", view="user_txn", events=args.events,
                            events_per_s=round(args.events / agg_s),
                            first_fifth_events_per_s=round(head_rows / agg_head_s),
                            plain_rows_per_s=round(head_rows / plain_s),
                            ratio=round(plain_s / agg_head_s, 2)))  # fmt: skip
        uids = np.arange(args.users)
        fs.ingest("plain9", pa.table({
            "user_id": pa.array(uids),
            "event_timestamp": pa.array(np.full(args.users, T0 + 30 * DAY)).cast(TS),
            **{f["name"]: pa.array(rng.random(args.users)) for f in PLAIN9},
        }))  # fmt: skip
        fs.flush()
        users = rng.integers(0, args.users, 20_000)
        it = iter(users.tolist() * 2)
        refs = [f"user_txn:{n}" for n in NAMES]
        p50, p99 = latency(lambda: fs.get_online_features(refs, {"user_id": [next(it)]}), 20_000)
        it = iter(users.tolist() * 2)
        plain_refs = ["plain_txn:amount", "plain_txn:merchant"]
        q50, q99 = latency(
            lambda: fs.get_online_features(plain_refs, {"user_id": [next(it)]}), 20_000
        )
        results.append(emit("online_1_entity", features=len(NAMES), p50_us=round(p50, 1),
                            p99_us=round(p99, 1), plain_p50_us=round(q50, 1),
                            plain_p99_us=round(q99, 1)))  # fmt: skip
        ev_stats = fs.stats()["online"]["user_txn"]["events"]
        off_dir = Path(tmp) / "root" / "offline"
        files = sorted(str(p) for p in off_dir.rglob("*.parquet") if "user_txn" in str(p))
        off_bytes = sum(os.path.getsize(f) for f in files)
        results.append(emit("memory", online_events=ev_stats["events"],
                            online_entities=ev_stats["entities"],
                            online_bytes_per_event=round(ev_stats["bytes"] / max(1, ev_stats["events"]), 1),
                            online_bytes_per_entity=round(ev_stats["bytes"] / max(1, ev_stats["entities"])),
                            offline_bytes_per_event=round(off_bytes / args.events, 1)))  # fmt: skip
        t_rows = T0 + 10 * DAY + rng.integers(0, 20 * DAY, args.rows)
        rows = pa.table({
            "user_id": pa.array(rng.integers(0, args.users, args.rows)),
            "event_timestamp": pa.array(t_rows).cast(TS),
        })  # fmt: skip
        out = Path(tmp) / "export.parquet"
        t = time.perf_counter()
        fs.export_training(rows, refs, out)
        ours_s = time.perf_counter() - t
        ours = pq.read_table(out)
        theirs, duck_s = duckdb_export(
            files, rows.append_column("rid", pa.array(np.arange(args.rows)))
        )
        bad = compare(ours, theirs)
        results.append(emit("export", rows=args.rows, events=args.events,
                            rickhouse_s=round(ours_s, 2), duckdb_window_s=round(duck_s, 2),
                            speedup=round(duck_s / ours_s, 2), mismatches=bad))  # fmt: skip
        fs.close()
        if args.rest_requests:
            rest = rest_compare(Path(tmp) / "root", users, args.rest_requests)
            results.append(emit("rest_1_entity", requests=args.rest_requests,
                                features=len(NAMES), **rest))  # fmt: skip
    print(f"\nmachine: {os.cpu_count()} cpus, load average at start {load}")
    print("| measurement | figure |\n|---|---|")
    for r in results:
        figs = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("bench", "what"))
        print(f"| {r['what']} | {figs} |")


if __name__ == "__main__":
    main()
