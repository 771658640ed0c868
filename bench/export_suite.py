"""The training-export comparison of bench/offline_export.py (`--suite store`, the default).

Side by side in one run, each in its own child process: `FeatureStore.export_training` of the
benchmark data (ingested through `FeatureStore.ingest` in large batches), Feast 0.67's DuckDB
offline store (`bench/feast_export.py` in .venv-feast) on the same rows, and the floor (DuckDB
reading the five key/version columns of the feature rows into Arrow, all columns, and writing
the result rows as zstd Parquet). `compare` checks Feast's result against rickhouse's, row by
row. Children print one JSON dict; the parent (offline_export.py) measures their peak RSS.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.offline_data import FEATURES, definitions, feature_chunks, make_entities

INGEST_BATCH = 1_000_000
KEY_COLUMNS = ["user_id", "event_timestamp", "created_timestamp", "_seq", "_row"]


CPU: dict[str, float] = {}  # CPU seconds (all threads) of the last _timed call's median run


def _timed(fn, repeat: int) -> tuple[float, list[float], object]:
    """Warm-up, then the median wall time of `repeat` runs; CPU["last"] is the process CPU
    time (user + system, every thread) of the median run: on a loaded machine it moves far
    less than the wall time."""
    fn()  # warm-up
    times, cpus, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    CPU["last"] = (
        cpus[times.index(statistics.median(times))] if repeat % 2 else statistics.median(cpus)
    )
    return statistics.median(times), times, out


def _open(work: Path):
    from offline import OfflineOptions
    from store import FeatureStore

    return FeatureStore(work / "root", offline_options=OfflineOptions(background=False))


def child_store_build(args, work: Path) -> dict:
    """Entity rows, the feature rows through FeatureStore.ingest (and as one Parquet file for
    Feast when --feast), flush and compact."""
    shutil.rmtree(work / "root", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    ents = make_entities(args.entity_rows, args.entities, args.days)
    pq.write_table(ents, work / "entities.parquet")
    fs = _open(work)
    fs.apply(definitions(args.ttl_days))
    writer = None
    t = time.perf_counter()
    n = 0
    for chunk in feature_chunks(args.features, args.entities, args.days):
        if args.feast:
            if writer is None:
                writer = pq.ParquetWriter(work / "features.parquet", chunk.schema)
            writer.write_table(chunk)
        for i in range(0, chunk.num_rows, INGEST_BATCH):
            fs.ingest("user_stats", chunk.slice(i, INGEST_BATCH))
        n += chunk.num_rows
    ingest_s = time.perf_counter() - t
    if writer is not None:
        writer.close()
    fs.flush()
    fs.compact()
    fs.close()
    files = _manifest_files(work)
    return {
        "rows": n,
        "ingest_rows_per_s": n / ingest_s,
        "files": len(files),
        "bytes": sum(Path(f).stat().st_size for f in files),
    }


def _manifest_files(work: Path) -> list[str]:
    """The Parquet files the offline manifest names for the view (never a glob: replaced files
    may wait on disk for a grace period)."""
    off = work / "root" / "offline"
    manifest = json.loads((off / "manifest.json").read_text())
    return [str(off / "user_stats" / f["path"]) for f in manifest["views"]["user_stats"]["files"]]


class _Phases(logging.Handler):
    """Collects the per-phase seconds the export logs ("offline: exported ... (match 0.3s, ...)")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.runs: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("offline: exported") and "(" in msg:
            inner = msg.rsplit("(", 1)[1]
            self.runs.append({k: float(v) for k, v in re.findall(r"(\w+) ([0-9.]+)s", inner)})


def child_store_export(args, work: Path) -> dict:
    """FeatureStore.export_training of the entity file to Parquet, with the seconds of each
    phase of the median run (wall and CPU: match = key decode + match, gather = feature
    decode + take, write = zstd encode)."""
    phases = _Phases()
    logger = logging.getLogger("offline.store")
    logger.addHandler(phases)
    logger.setLevel(logging.INFO)
    fs = _open(work)
    out = work / "rickhouse.parquet"
    refs = [f"user_stats:{f}" for f in FEATURES]
    if args.entities_as_of:
        out = work / "rickhouse_as_of.parquet"
        med, times, res = _timed(
            lambda: fs.export_training(None, refs, out, entities_as_of=args.entities_as_of),
            args.repeat,
        )
    else:
        med, times, res = _timed(
            lambda: fs.export_training(str(work / "entities.parquet"), refs, out), args.repeat
        )
    cpu = CPU["last"]
    fs.close()
    logger.removeHandler(phases)
    timed = phases.runs[1:]  # after the warm-up
    return {
        "seconds": med,
        "cpu_seconds": cpu,
        "phases": timed[times.index(med)] if med in times and len(timed) == len(times) else {},
        "runs": times,
        "rows": res["rows"],
        "file_bytes": out.stat().st_size,
    }


def feast_command(args, work: Path) -> list[str]:
    root = Path(__file__).resolve().parents[1]
    return [
        str(root / ".venv-feast" / "bin" / "python"),
        str(root / "bench" / "feast_export.py"),
        f"--features-parquet={work / 'features.parquet'}",
        f"--entities={work / 'entities.parquet'}",
        f"--ttl-days={args.ttl_days}",
        f"--repeat={args.repeat}",
        f"--out={work / 'feast.parquet'}",
    ]


def _drain(con, sql: str, files: list[str]) -> int:
    """Run `sql` into Arrow record batches, dropping each: decode without holding every row
    (100M rows held would not fit in memory)."""
    reader = con.sql(sql, params={"f": files}).to_arrow_reader(1 << 20)
    return sum(b.num_rows for b in reader)


def child_floor(args, work: Path) -> dict:
    """DuckDB reading the feature rows (five key/version columns; all columns) into Arrow, and
    writing rickhouse's result rows as zstd Parquet (DuckDB COPY; pyarrow beside it)."""
    import duckdb

    con = duckdb.connect()
    files = _manifest_files(work)
    cols = ", ".join(KEY_COLUMNS)
    cpu = {}
    keys_s, keys_runs, _ = _timed(
        lambda: _drain(con, f"SELECT {cols} FROM read_parquet($f)", files),
        args.repeat,
    )
    cpu["read_keys"] = CPU["last"]
    all_s, all_runs, _ = _timed(
        lambda: _drain(con, "SELECT * FROM read_parquet($f)", files),
        args.repeat,
    )
    cpu["read_all"] = CPU["last"]
    feats = ", ".join(FEATURES)
    feat_s, feat_runs, _ = _timed(
        lambda: _drain(con, f"SELECT {feats} FROM read_parquet($f)", files), args.repeat
    )
    cpu["read_features"] = CPU["last"]
    result = pq.read_table(work / "rickhouse.parquet")
    con.register("result", result)
    out = str(work / "floor_out.parquet")
    write_s, write_runs, _ = _timed(
        lambda: con.execute(
            f"COPY result TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
        ).fetchall(),
        args.repeat,
    )
    cpu["write"] = CPU["last"]
    pa_s, _, _ = _timed(lambda: pq.write_table(result, out, compression="zstd"), args.repeat)
    return {
        "seconds": keys_s + write_s,
        "cpu_seconds": cpu["read_keys"] + cpu["write"],
        "cpu": cpu,
        "read_keys_seconds": keys_s,
        "read_all_seconds": all_s,
        "read_features_seconds": feat_s,
        "write_seconds": write_s,
        "write_pyarrow_seconds": pa_s,
        "runs": {"keys": keys_runs, "all": all_runs, "features": feat_runs, "write": write_runs},
        "result_rows": result.num_rows,
    }


def child_compare(args, work: Path) -> dict:
    """Feast's result against rickhouse's export: every entity row, every feature value."""
    ours = pq.read_table(work / "rickhouse.parquet")
    feast = pq.read_table(work / "feast.parquet")
    out: dict = {"rows": ours.num_rows, "feast_rows": feast.num_rows, "mismatches": {}}
    if feast.num_rows != ours.num_rows:
        return out
    row = feast.column("__row").to_numpy()
    if not np.array_equal(row, np.arange(len(row))):
        out["row_order"] = "feast lost or repeated entity rows"
        return out
    examples = []
    total = 0
    for f in FEATURES:
        a, b = ours.column(f).combine_chunks(), feast.column(f).combine_chunks()
        if a.type != b.type:
            b = b.cast(a.type)
        both_null = np.asarray(a.is_null()) & np.asarray(b.is_null())
        eq = np.asarray(a.to_pandas() == b.to_pandas()) | both_null
        bad = np.flatnonzero(~eq)
        out["mismatches"][f] = int(len(bad))
        total += len(bad)
        for i in bad[:2]:
            examples.append(
                {"row": int(i), "feature": f, "ours": a[i].as_py(), "feast": b[i].as_py()}
            )
    out["total_mismatches"] = total
    out["examples"] = examples[:6]
    out["exact"] = total == 0
    out["rows_differing"], out["rows_full_ties"] = _ties(work, ours, feast)
    return out


def _ties(work: Path, ours, feast) -> tuple[int, int]:
    """Entity rows whose features differ, and how many of them are full version ties: both
    results took a feature row with the same (key, event_timestamp, created_timestamp), which
    Feast breaks arbitrarily and rickhouse by arrival order (_seq, _row: the later row wins)."""
    import pandas as pd

    a = ours.select(FEATURES).to_pandas()
    b = feast.select(FEATURES).to_pandas()
    differ = ~((a == b) | (a.isna() & b.isna())).all(axis=1).to_numpy()
    rows = np.flatnonzero(differ)
    if not len(rows):
        return 0, 0
    cols = ["user_id", "event_timestamp", "created_timestamp", "f_int", "f_float"]
    feats = pq.read_table(work / "features.parquet", columns=cols).to_pandas()
    version = feats.set_index(["user_id", "f_int", "f_float"])[cols[1:3]]
    version = version[~version.index.duplicated()]
    keys = ours.column("user_id").to_numpy()
    ties = 0
    for r in rows:
        try:
            va = version.loc[(keys[r], a["f_int"][r], a["f_float"][r])]
            vb = version.loc[(keys[r], b["f_int"][r], b["f_float"][r])]
        except (KeyError, TypeError):
            continue
        ties += bool(pd.Series(va == vb).all())
    return int(len(rows)), ties


CHILDREN = {
    "store_build": child_store_build,
    "store_export": child_store_export,
    "floor": child_floor,
    "compare": child_compare,
}


def pick_median_rounds(results: dict) -> None:
    """With --rounds: `results["rickhouse"]` and `["feast"]` become the median round of each
    (by wall seconds), and `results["rounds"]` lists every round's seconds and ratio."""
    rounds = []
    for key in sorted(k for k in results if k.startswith("rickhouse")):
        tag = key[len("rickhouse") :]
        feast = results.get("feast" + tag)
        rounds.append(
            {
                "rickhouse": results[key]["seconds"],
                "feast": feast["seconds"] if feast else None,
                "ratio": feast["seconds"] / results[key]["seconds"] if feast else None,
            }
        )
    if len(rounds) < 2:
        return
    for name in ("rickhouse", "feast"):
        runs = sorted((v for k, v in results.items() if k.split("#")[0] == name), key=_secs)
        if runs:
            results[name] = runs[len(runs) // 2]
    results["rounds"] = rounds


def _secs(result: dict) -> float:
    return float(result["seconds"])


def summary(results: dict) -> list[str]:
    """The table and ratios of the store suite."""
    r, fl = results["rickhouse"], results["floor"]
    lines = [f"{'measurement':40} {'median':>10} {'peak RSS MB':>12}"]
    for label, key in (("rickhouse export_training", "rickhouse"), ("feast duckdb to_df", "feast")):
        if key in results:
            x = results[key]
            lines.append(
                f"{label:40} {x['seconds']:>9.3f}s {x['peak_rss_mb']:>12.0f}"
                f"  (CPU {x['cpu_seconds']:.3f}s)"
            )
    lines.append(f"{'floor: read key/version columns':40} {fl['read_keys_seconds']:>9.3f}s")
    lines.append(f"{'floor: read all columns':40} {fl['read_all_seconds']:>9.3f}s")
    lines.append(f"{'floor: read the feature columns':40} {fl['read_features_seconds']:>9.3f}s")
    lines.append(f"{'floor: write result (DuckDB zstd)':40} {fl['write_seconds']:>9.3f}s")
    lines.append(f"{'      write result (pyarrow zstd)':40} {fl['write_pyarrow_seconds']:>9.3f}s")
    lines.append(
        f"{'floor (read keys + write)':40} {fl['seconds']:>9.3f}s {fl['peak_rss_mb']:>12.0f}"
    )
    ratios = f"rickhouse/floor = {r['seconds'] / fl['seconds']:.2f}x"
    ratios += f" (CPU {r['cpu_seconds'] / fl['cpu_seconds']:.2f}x)"
    if "feast" in results:
        ratios += f"; rickhouse/feast = {r['seconds'] / results['feast']['seconds']:.2f}x"
        ratios += f" (feast/rickhouse = {results['feast']['seconds'] / r['seconds']:.2f}x"
        ratios += f"; CPU {results['feast']['cpu_seconds'] / r['cpu_seconds']:.2f}x)"
    lines.append(ratios)
    ph = r.get("phases") or {}
    if ph:
        lines.append(
            "rickhouse phases (wall / CPU): "
            + ", ".join(
                f"{k} {ph[k]:.3f}s / {ph.get(k + '_cpu', 0):.3f}s"
                for k in ("match", "gather", "write")
                if k in ph
            )
            + f"; vs floor: match/read-keys {ph.get('match', 0) / fl['read_keys_seconds']:.2f}x, "
            f"gather/read-features {ph.get('gather', 0) / fl['read_features_seconds']:.2f}x, "
            f"write/pyarrow-write {ph.get('write', 0) / fl['write_pyarrow_seconds']:.2f}x"
        )
    if "rounds" in results:
        lines.append(
            "rounds (rickhouse s, feast s, feast/rickhouse): "
            + "; ".join(
                f"{x['rickhouse']:.2f}, {x['feast']:.2f}, {x['ratio']:.2f}x"
                if x["feast"]
                else f"{x['rickhouse']:.2f}"
                for x in results["rounds"]
            )
        )
    if "compare" in results:
        c = results["compare"]
        lines.append(f"exactness vs feast: {c}")
    return lines
