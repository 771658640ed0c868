"""Offline store benchmark: point-in-time join and export against pandas merge_asof.

One command: `python bench/offline_export.py` (add `--quick` for a small smoke run).
Data: 5M feature rows for 1M entities over 30 days, 8 features (2 int, 2 float, 2 string,
2 bool), 5% late events and 2% duplicate (key, event_timestamp) rows with a newer
created_timestamp; 1M entity rows with labels, 5% of them unknown keys.
Each measurement runs in its own child process (warm-up run first, then the median of
--repeat runs); peak RSS is the child's own (psutil polling by the parent and the child's
ru_maxrss, whichever is higher), so it includes Python, pyarrow and DuckDB themselves.
Prints the machine, the data sizes, one JSON line per measurement and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import export_suite  # noqa: E402
from bench.offline_data import (  # noqa: E402
    DAY,
    FEATURES,
    SCHEMA,
    T0,
    make_entities,
    make_features,
)
from offline import FeatureQuery, OfflineOptions, OfflineStore  # noqa: E402

BATCH = 100_000


def _queries(ttl_days: int) -> list[FeatureQuery]:
    return [FeatureQuery("user_stats", FEATURES, ["user_id"], ttl_ns=ttl_days * DAY)]


def _timed(fn, repeat: int) -> tuple[float, list[float], object]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, out


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- children


def child_build(args, work: Path) -> dict:
    feats = make_features(args.features, args.entities, args.days)
    ents = make_entities(args.entity_rows, args.entities, args.days)
    pq.write_table(ents, work / "entities.parquet")
    batches = [feats.slice(i, BATCH) for i in range(0, feats.num_rows, BATCH)]
    # append into the buffer only (what the writer thread pays per batch)
    opts = OfflineOptions(background=False, buffer_rows=10**12)
    off = OfflineStore(work / "scratch", opts)
    off.register_view("user_stats", SCHEMA, ["user_id"])
    t = time.perf_counter()
    for seq, b in enumerate(batches, 1):
        off.append("user_stats", b, seq)
    append_s = time.perf_counter() - t
    off.close()
    shutil.rmtree(work / "scratch")
    # append with flushes to Parquet every 1M rows, durable (fsync), end to end
    off = OfflineStore(work / "store", OfflineOptions(background=False, buffer_rows=1_000_000))
    off.register_view("user_stats", SCHEMA, ["user_id"])
    t = time.perf_counter()
    for seq, b in enumerate(batches, 1):
        off.append("user_stats", b, seq)
    off.flush()
    durable_s = time.perf_counter() - t
    stats = off.stats()["user_stats"]
    off.close()
    return {
        "rows": feats.num_rows,
        "append_rows_per_s": feats.num_rows / append_s,
        "append_flush_rows_per_s": feats.num_rows / durable_s,
        "files": stats["files"],
        "partitions": stats["partitions"],
        "bytes": stats["bytes"],
    }


def _store(args, work: Path) -> OfflineStore:
    return OfflineStore(work / "store", OfflineOptions(background=False, join_plan=args.plan))


def child_join(args, work: Path) -> dict:
    ents = pq.read_table(work / "entities.parquet")
    off = _store(args, work)
    med, times, out = _timed(lambda: off.get_historical(ents, _queries(args.ttl_days)), args.repeat)
    assert out.num_rows == ents.num_rows
    if args.plan == "auto":
        pq.write_table(out.select(["user_id", "f_int", "f_str"]), work / "ours.parquet")
    else:
        ours = pq.read_table(work / "ours.parquet")
        assert out.select(["user_id", "f_int", "f_str"]).equals(ours), "plans disagree"
    off.close()
    return {"seconds": med, "runs": times, "rows": out.num_rows}


def child_export(args, work: Path) -> dict:
    off = _store(args, work)
    out = work / "export.parquet"
    med, times, res = _timed(
        lambda: off.export(work / "entities.parquet", _queries(args.ttl_days), out), args.repeat
    )
    off.close()
    return {"seconds": med, "runs": times, "rows": res.rows, "file_bytes": out.stat().st_size}


def child_scan(args, work: Path) -> dict:
    off = OfflineStore(work / "store", OfflineOptions(background=False))
    day = T0 + 10 * DAY
    one, one_runs, t1 = _timed(
        lambda: off.scan("user_stats", day, day + DAY).read_all(), args.repeat
    )
    full, full_runs, t2 = _timed(lambda: off.scan("user_stats").read_all(), args.repeat)
    off.close()
    return {
        "seconds": one,
        "full_seconds": full,
        "one_day_rows": t1.num_rows,
        "full_rows": t2.num_rows,
        "runs": one_runs,
        "full_runs": full_runs,
    }


def child_pandas(args, work: Path) -> dict:
    import pandas as pd

    t = time.perf_counter()
    feats = pq.read_table(work / "store" / "offline" / "user_stats", partitioning=None).to_pandas()
    ents = pd.read_parquet(work / "entities.parquet")
    load_s = time.perf_counter() - t

    def run() -> pd.DataFrame:
        # the hand-written baseline: version order, then merge_asof per key, ttl by hand
        f = feats.sort_values(["event_timestamp", "created_timestamp", "_seq", "_row"])
        e = ents.reset_index().sort_values("event_timestamp")
        m = pd.merge_asof(
            e,
            f[["user_id", "event_timestamp", *FEATURES]].rename(
                columns={"event_timestamp": "feature_ts"}
            ),
            left_on="event_timestamp",
            right_on="feature_ts",
            by="user_id",
            direction="backward",
            allow_exact_matches=True,
        )
        if args.ttl_days:
            stale = m["feature_ts"] < m["event_timestamp"] - pd.Timedelta(args.ttl_days, "D")
            m.loc[stale, FEATURES] = None
        return m.sort_values("index").drop(columns=["index", "feature_ts"])

    med, times, out = _timed(run, args.repeat)
    ours = pq.read_table(work / "ours.parquet").to_pandas()
    same = bool(
        (
            (out["f_int"].to_numpy() == ours["f_int"].to_numpy())
            | (out["f_int"].isna().to_numpy() & ours["f_int"].isna().to_numpy())
        ).all()
    )
    return {"seconds": med, "runs": times, "load_seconds": load_s, "same_as_rickhouse": same}


CHILDREN = {
    **export_suite.CHILDREN,
    "build": child_build,
    "join": child_join,
    "export": child_export,
    "scan": child_scan,
    "pandas": child_pandas,
}


# ---------------------------------------------------------------- parent


def run_child(name: str, argv: list[str], command: list[str] | None = None) -> dict:
    """Run a child (`command`, default this script's `--child name`); its JSON plus peak RSS."""
    cmd = command or [sys.executable, __file__, "--child", name, *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = 0
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"child {name} failed with {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = max(peak / 2**20, result.pop("maxrss_mb"))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--features", type=int, default=5_000_000)
    p.add_argument("--entities", type=int, default=1_000_000)
    p.add_argument("--entity-rows", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--ttl-days", type=int, default=7)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--child", choices=sorted(CHILDREN), default=None)
    p.add_argument("--plan", choices=["auto", "asof"], default="auto")
    p.add_argument(
        "--suite",
        choices=["store", "engine"],
        default="store",
        help="store: FeatureStore.export_training vs Feast vs the floor; engine: OfflineStore "
        "join/export plans vs pandas",
    )
    p.add_argument("--no-feast", dest="feast", action="store_false", help="skip Feast")
    p.add_argument("--entities-as-of", default=None, help="also export with entities_as_of=TS")
    p.add_argument("--reuse", action="store_true", help="keep the built store in --workdir")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="store suite: run rickhouse and Feast this many times, alternating (each a child "
        "with its own warm-up and --repeat runs); the tables use the median round of each",
    )
    args = p.parse_args()
    if args.quick:
        args.features, args.entities, args.entity_rows, args.repeat = 200_000, 40_000, 40_000, 1
    if args.child:
        result = CHILDREN[args.child](args, args.workdir)
        result["maxrss_mb"] = _maxrss_mb()
        print(json.dumps(result))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rickhouse-bench-offline-"))
    if args.suite == "store":
        run_store_suite(args, work)
        return
    argv = [
        f"--features={args.features}",
        f"--entities={args.entities}",
        f"--entity-rows={args.entity_rows}",
        f"--days={args.days}",
        f"--ttl-days={args.ttl_days}",
        f"--repeat={args.repeat}",
        f"--workdir={work}",
    ]
    import duckdb
    import pandas

    print(
        f"# machine: {platform.platform()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; python {platform.python_version()}, "
        f"duckdb {duckdb.__version__}, pyarrow {pa.__version__}, pandas {pandas.__version__}"
    )
    print(
        f"# data: {args.features:,} feature rows, {args.entities:,} entities, {args.days} days, "
        f"8 features; {args.entity_rows:,} entity rows with labels; ttl {args.ttl_days} days"
    )
    results = {}
    steps = [
        ("build", "build", "auto"),
        ("join", "join", "auto"),
        ("export", "export", "auto"),
        ("join_asof", "join", "asof"),
        ("export_asof", "export", "asof"),
        ("scan", "scan", "auto"),
        ("pandas", "pandas", "auto"),
    ]
    try:
        for label, name, plan in steps:
            results[label] = run_child(name, [*argv, f"--plan={plan}"])
            print(json.dumps({"measurement": label, **results[label]}), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    b, j, e, s, pd_ = (results[k] for k in ("build", "join", "export", "scan", "pandas"))
    ja, ea = results["join_asof"], results["export_asof"]
    rows = [
        ("append to buffer", f"{b['append_rows_per_s'] / 1e6:.2f} M rows/s", "-", ">= 1M rows/s"),
        (
            "append + flush to Parquet",
            f"{b['append_flush_rows_per_s'] / 1e6:.2f} M rows/s",
            f"{b['peak_rss_mb']:.0f}",
            "-",
        ),
        ("join -> Arrow (numba match)", f"{j['seconds']:.2f} s", f"{j['peak_rss_mb']:.0f}", "-"),
        (
            "export -> Parquet (numba match)",
            f"{e['seconds']:.2f} s",
            f"{e['peak_rss_mb']:.0f}",
            "<= 2.5 s, <= 700 MB",
        ),
        ("join -> Arrow (DuckDB ASOF)", f"{ja['seconds']:.2f} s", f"{ja['peak_rss_mb']:.0f}", "-"),
        (
            "export -> Parquet (DuckDB ASOF)",
            f"{ea['seconds']:.2f} s",
            f"{ea['peak_rss_mb']:.0f}",
            "<= 2.5 s, <= 700 MB",
        ),
        (
            "pandas merge_asof (in memory)",
            f"{pd_['seconds']:.2f} s",
            f"{pd_['peak_rss_mb']:.0f}",
            f"same result: {pd_['same_as_rickhouse']}",
        ),
        (
            "scan one day",
            f"{s['seconds']:.3f} s ({s['one_day_rows']:,} rows)",
            f"{s['peak_rss_mb']:.0f}",
            "-",
        ),
        ("scan all 30 days", f"{s['full_seconds']:.3f} s ({s['full_rows']:,} rows)", "", "-"),
    ]
    print(f"\n{'measurement':32} {'median':28} {'peak RSS MB':>12}  target")
    for r in rows:
        print(f"{r[0]:32} {r[1]:28} {r[2]:>12}  {r[3]}")
    print(
        f"\nratios: pandas merge_asof / rickhouse join = {pd_['seconds'] / j['seconds']:.1f}x; "
        f"DuckDB ASOF / numba match (join) = {ja['seconds'] / j['seconds']:.1f}x; "
        f"full scan / one-day scan = {s['full_seconds'] / s['seconds']:.1f}x"
    )


def run_store_suite(args, work: Path) -> None:
    argv = [
        f"--features={args.features}",
        f"--entities={args.entities}",
        f"--entity-rows={args.entity_rows}",
        f"--days={args.days}",
        f"--ttl-days={args.ttl_days}",
        f"--repeat={args.repeat}",
        f"--workdir={work}",
        *([] if args.feast else ["--no-feast"]),
    ]
    print(
        f"# machine: {platform.platform()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; load {os.getloadavg()}"
    )
    print(
        f"# data: {args.features:,} feature rows, {args.entities:,} entities, {args.days} days, "
        f"8 features; {args.entity_rows:,} entity rows; ttl {args.ttl_days} days"
    )
    results: dict = {}
    steps = []
    if not (args.reuse and (work / "root").exists()):
        steps.append(("build", "store_build", None))
    for r in range(max(1, args.rounds)):
        tag = "" if r == 0 else f"#{r + 1}"
        steps.append(("rickhouse" + tag, "store_export", None))
        if args.feast:
            steps.append(("feast" + tag, "feast", export_suite.feast_command(args, work)))
    steps.append(("floor", "floor", None))
    if args.feast:
        steps.append(("compare", "compare", None))
    if args.entities_as_of:
        steps.append(("entities_as_of", "store_export", None))
    try:
        for label, name, command in steps:
            extra = [f"--entities-as-of={args.entities_as_of}"] if label == "entities_as_of" else []
            results[label] = run_child(name, [*argv, *extra], command)
            print(json.dumps({"measurement": label, **results[label]}), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    export_suite.pick_median_rounds(results)
    print("\n".join(export_suite.summary(results)))


if __name__ == "__main__":
    main()
