"""Benchmark of the online engine: batched key lookups, learned vs block index vs baselines.

One command:  python bench/online_lookup.py [--quick] [--n 1000000 10000000] [--dists ...]

For each N and key distribution it ingests N rows (uint64 key + 8 float32 features) into an
LSMTree in batches of 10k (ingest rows/s), leaves it in the multi-level state that ingest produced
(L0 files + levels), measures lookups there, then compacts it fully (one sorted run) and measures
again. Each state is opened in the three index modes (`learned`, `block`, `auto`); the same files
serve all three. Lookups: batches of 100k random existing keys, and a variant with 10% misses;
each returns the 8 features (get_many + the 8 feature arrays). Baselines on the fully compacted
data: a numba binary search (lockstep, no index) over the same key array + gather of the records,
rocksdict (RocksDB) `get` of a list, sqlite `WHERE key IN (...)`. For `uniform` the ingest is
repeated with the default TreeOptions, with event times in order (each batch at least as new
as what is stored: the write path skips its version lookup) and out of order (random times over
30 days: every batch is looked up against the tree).

Prints one JSON line per measurement, a table, and as last line
{"summary": {"learned_vs_block", "learned_vs_rocksdb", "learned_ns_per_key",
"learned_index_bytes_per_key"}} for the uniform distribution, fully compacted, hits only.
Data lives in a temp directory (or --dir) and is deleted at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from online import Field, LSMTree, PLRModel, TreeOptions  # noqa: E402
from online import _kernels as K  # noqa: E402
from online.options import PLR_FITS  # noqa: E402

NFEAT = 8
BATCH = 100_000
INGEST_BATCH = 10_000
FIELDS = [Field(f"f{i}", "float32") for i in range(NFEAT)]
NAMES = [f.name for f in FIELDS]
DISTS = ["dense_gaps", "uniform", "lognormal", "segmented_1pct", "segmented_10pct", "clustered"]
# small memtables and L1 so that ingest leaves a multi-level state (L0 files, L1, L2, ..)
TREE_OPTS = dict(memtable_bytes=8 << 20, level1_bytes=32 << 20, l0_trigger=4, size_ratio=10)
MODES = ("learned", "block", "auto")
AUTO_WARMUP = 5  # batches of traffic the `auto` tree serves before its analyzer decides


# ---- data ------------------------------------------------------------------------------------


def make_keys(dist: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """n unique uint64 keys of a distribution, sorted."""
    u = np.uint64
    m = int(n * 1.25) + 1000
    if dist == "dense_gaps":  # consecutive ids with a gap of 1..100 after 10% of them
        gaps = 1 + (rng.random(m) < 0.1) * rng.integers(1, 100, m)
        keys = np.cumsum(gaps).astype(u)
    elif dist == "uniform":
        keys = rng.integers(0, 2**64 - 1, m, dtype=u, endpoint=True)
    elif dist == "lognormal":
        keys = (rng.lognormal(0.0, 2.0, m) * 1e12).clip(0, 2**63).astype(u)
    elif dist.startswith("segmented"):  # a new slope starts at 1% / 10% of the keys
        p = 0.01 if dist.endswith("1pct") else 0.10
        starts = rng.random(m) < p
        seg = np.cumsum(starts)
        slopes = np.exp(rng.uniform(0, np.log(10_000), seg[-1] + 1)).astype(np.int64)
        keys = np.cumsum(slopes[seg]).astype(u)
    elif dist == "clustered":  # 1000 clusters at random places, normal spread around each
        centers = rng.integers(2**40, 2**63, 1000, dtype=u)
        which = rng.integers(0, 1000, m)
        spread = rng.normal(0, 5e6, m).astype(np.int64)
        keys = (centers[which].astype(np.int64) + spread).astype(u)
    else:
        raise SystemExit(f"unknown distribution {dist!r}; choose from {DISTS}")
    keys = np.unique(keys)
    if len(keys) < n:
        raise SystemExit(f"{dist}: only {len(keys)} unique keys generated for n={n}")
    return np.sort(rng.choice(keys, n, replace=False))


def lookup_batches(keys: np.ndarray, reps: int, misses: float, rng) -> list[np.ndarray]:
    out = []
    for _ in range(reps):
        q = keys[rng.integers(0, len(keys), BATCH)]
        if misses:
            k = int(BATCH * misses)
            cand = rng.integers(0, 2**64 - 1, 4 * k, dtype=np.uint64, endpoint=True)
            pos = np.searchsorted(keys, cand).clip(0, len(keys) - 1)
            absent = cand[keys[pos] != cand][:k]
            q[rng.choice(BATCH, len(absent), replace=False)] = absent
        out.append(q)
    return out


# ---- measurement -----------------------------------------------------------------------------


def timed(fns: dict, batches: list[np.ndarray]) -> dict:
    """ns/key of each system over the same batches, interleaved (each batch runs on every system
    in turn) so that load from other processes hits all of them alike."""
    for fn in fns.values():
        fn(batches[0])  # warm up (compiles, faults pages in)
    ns: dict = {name: [] for name in fns}
    for q in batches[1:]:
        for name, fn in fns.items():
            t = time.perf_counter_ns()
            fn(q)
            ns[name].append((time.perf_counter_ns() - t) / len(q))
    return {
        name: {"ns_per_key": float(np.median(v)), "min": float(min(v)), "max": float(max(v))}
        for name, v in ns.items()
    }


def engine_lookup(tree: LSMTree):
    """get_many of a batch + the 8 feature arrays."""

    def run(q: np.ndarray) -> None:
        r = tree.get_many(q)
        for name in NAMES:
            r.values(name)

    return run


def index_stats(tree: LSMTree) -> dict:
    v = tree._version
    tables = [t for _, t in v.tables()]
    keys = sum(len(t) for t in tables)
    learned = [t for t in tables if t.model is not None and t.index_mode == "learned"]
    blocks = [t for t in tables if t.index_mode == "block"]
    out = {"sstables": len(tables), "levels": [len(lv) for lv in v.levels]}
    if learned:
        lk = sum(len(t) for t in learned)
        out["learned_tables"] = len(learned)
        out["model_bytes_per_key"] = sum(t.model.nbytes for t in learned) / lk
        out["plr_segments"] = sum(t.model.segments for t in learned)
        out["build_ns_per_key"] = sum(t.model.build_ns for t in learned) / lk
    if blocks:
        bk = sum(len(t) for t in blocks)
        out["fence_bytes_per_key"] = sum(t.fence_bytes for t in blocks) / bk
        out["block_build_ns_per_key"] = sum(t.block_build_ns for t in blocks) / bk
    out["keys"] = keys
    return out


def linked_copy(src: Path, dst: Path) -> None:
    """A second tree directory on the same sstable files (hard links) and a copy of the manifest:
    the three index modes are opened side by side on identical data."""
    dst.mkdir()
    for p in src.iterdir():
        if p.suffix == ".sst":
            os.link(p, dst / p.name)
        elif p.name == "MANIFEST":
            shutil.copy(p, dst / p.name)


def measure_state(path: Path, state: str, hit, miss, emit, t_wait: float, baseline: bool) -> dict:
    """Open the tree at `path` in the three modes at once and time them interleaved."""
    trees = {}
    for mode in MODES:
        d = path.parent / f"{path.name}-{mode}"
        linked_copy(path, d)
        opts = TreeOptions(index=mode, background=False, t_wait_s=t_wait, **TREE_OPTS)
        trees[mode] = LSMTree(d, FIELDS, opts)
    auto = engine_lookup(trees["auto"])
    for _ in range(AUTO_WARMUP):  # the analyzer sees traffic, T_wait passes, then it decides
        auto(hit[0])
    time.sleep(t_wait)
    trees["auto"].analyze()
    stats = {mode: index_stats(t) for mode, t in trees.items()}
    res = {}
    for variant, batches in (("hits", hit), ("10pct_misses", miss)):
        fns = {f"engine-{m}": engine_lookup(t) for m, t in trees.items()}
        if baseline and variant == "hits" and stats["block"]["sstables"] == 1:
            fns["numba-binary-search"] = numba_search(trees["block"])
        for system, r in timed(fns, batches).items():
            mode = system.removeprefix("engine-")
            r.update(system=system, state=state, variant=variant, **stats.get(mode, {}))
            if mode == "auto":
                a = trees["auto"].stats()["analyzer"]
                r["analyzer"] = {"learned": a["learned"], "skipped": a["skipped"]}
            emit(r)
            res[(mode, variant)] = r
    for mode, t in trees.items():
        t.close()
        shutil.rmtree(path.parent / f"{path.name}-{mode}")
    gc.collect()
    return res


def numba_search(tree: LSMTree):
    """Baseline: a numba binary search (lockstep groups, no index) over the sorted key array of
    the one sstable, then a gather of the same 8 features from its records."""
    (t,) = [t for _, t in tree._version.tables()]
    keys, recs = t.keys, t.records
    layout = t.layout

    def run(q: np.ndarray) -> None:
        pos = np.empty(len(q), dtype=np.int64)
        K.binary_search_many(keys, q, pos)
        rows = recs[pos.clip(0)]
        for name in NAMES:
            layout.values(rows, name)

    return run


def rocks_baseline(root: Path, keys, vals, batches, emit) -> dict:
    from rocksdict import Options, Rdict, WriteBatch

    path = root / "rocksdb"
    db = Rdict(str(path), Options(raw_mode=True))
    kb = keys.astype(">u8").tobytes()
    vb = np.ascontiguousarray(vals.T).tobytes()
    rb = NFEAT * 4
    t0 = time.perf_counter()
    for s in range(0, len(keys), 100_000):
        wb = WriteBatch(raw_mode=True)
        for i in range(s, min(s + 100_000, len(keys))):
            wb.put(kb[8 * i : 8 * i + 8], vb[rb * i : rb * i + rb])
        db.write(wb)
    db.flush()
    db.compact_range(None, None)
    load = time.perf_counter() - t0

    def run(q: np.ndarray) -> None:
        b = q.astype(">u8").tobytes()
        got = db.get([b[i : i + 8] for i in range(0, len(b), 8)])
        np.frombuffer(b"".join(v for v in got if v is not None), dtype=np.float32)

    r = timed({"rocksdict": run}, batches)["rocksdict"]
    r.update(system="rocksdict", state="compacted", variant="hits", load_s=load)
    emit(r)
    db.close()
    Rdict.destroy(str(path))
    return r


def sqlite_baseline(root: Path, keys, vals, batches, emit) -> dict:
    path = root / "bench.sqlite"
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    signed = (keys ^ np.uint64(1 << 63)).view(np.int64)  # order-preserving into int64
    vb = np.ascontiguousarray(vals.T)
    t0 = time.perf_counter()
    con.executemany(
        "INSERT INTO t VALUES (?, ?)", ((int(signed[i]), vb[i].tobytes()) for i in range(len(keys)))
    )
    con.commit()
    load = time.perf_counter() - t0
    chunk = 30_000  # below SQLITE_MAX_VARIABLE_NUMBER (32766)

    def run(q: np.ndarray) -> None:
        s = (q ^ np.uint64(1 << 63)).view(np.int64).tolist()
        rows = []
        for i in range(0, len(s), chunk):
            part = s[i : i + chunk]
            sql = f"SELECT k, v FROM t WHERE k IN ({','.join('?' * len(part))})"
            rows += con.execute(sql, part).fetchall()
        np.frombuffer(b"".join(v for _, v in rows), dtype=np.float32)

    r = timed({"sqlite": run}, batches[:4])["sqlite"]
    r.update(system="sqlite", state="compacted", variant="hits", load_s=load)
    emit(r)
    con.close()
    path.unlink()
    return r


def ingest(
    path, keys, vals, rng, opts: dict | None = None, out_of_order: bool = False
) -> tuple[float, dict]:
    """Write keys (shuffled) in 10k-row batches; returns (rows/s wall, stats incl. CPU times).

    Event times are in order (every batch at least as new as the stored rows: the engine skips
    its version lookup), or with out_of_order=True random over 30 days, so that every batch
    looks its keys up against the tree to keep a newer stored row."""
    order = rng.permutation(len(keys))
    k = keys[order]
    v = vals[:, order]
    t_base = 1_700_000_000_000_000_000
    if out_of_order:
        ev_all = t_base + rng.integers(0, 30 * 86_400, len(k)) * 1_000_000_000
    else:
        ev_all = np.full(len(k), t_base, dtype=np.int64)
    batches = []
    for s in range(0, len(k), INGEST_BATCH):
        cols = [pa.array(v[i, s : s + INGEST_BATCH]) for i in range(NFEAT)]
        ev = np.ascontiguousarray(ev_all[s : s + INGEST_BATCH])
        batches.append((k[s : s + INGEST_BATCH], ev, pa.RecordBatch.from_arrays(cols, names=NAMES)))
    opts = TREE_OPTS if opts is None else opts
    tree = LSMTree(path, FIELDS, TreeOptions(index="block", background=True, **opts))
    t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
    for seq, (kk, ev, b) in enumerate(batches, start=1):
        tree.write(seq, kk, ev, ev, b)
    elapsed = time.perf_counter() - t0
    cpu = {
        "writer_cpu_s": time.thread_time() - c0,
        "process_cpu_s": time.process_time() - p0,
        "wall_s": elapsed,
    }
    tree.flush()  # the state ingest left (L0 files, levels) is the multi-level state
    st = tree.stats()
    st["cpu"] = cpu
    tree.close()
    return len(keys) / elapsed, st


# ---- main ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N=1M, two distributions, < 1 minute")
    ap.add_argument("--n", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--dists", nargs="+", default=DISTS)
    ap.add_argument("--reps", type=int, default=7, help="timed batches per measurement")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--dir", help="where to keep the data (default: a temp dir), deleted at exit")
    args = ap.parse_args()
    if args.quick:
        args.n, args.dists, args.reps = [1_000_000], ["uniform", "segmented_10pct"], 3
    root = Path(tempfile.mkdtemp(prefix="rickhouse-bench-", dir=args.dir))
    results: list[dict] = []

    def emit(r: dict) -> None:
        results.append(r)
        print(json.dumps(r, default=float), flush=True)

    mem = psutil.virtual_memory().total / 2**30
    print(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "mem_gib": round(mem, 1),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "n": args.n,
                "dists": args.dists,
                "batch": BATCH,
                "reps": args.reps,
                "features": f"{NFEAT} x float32",
            }
        ),
        flush=True,
    )
    summary = {}
    try:
        for n in args.n:
            for dist in args.dists:
                rng = np.random.default_rng(42)
                keys = make_keys(dist, n, rng)
                vals = rng.random((NFEAT, n), dtype=np.float32)
                path = root / f"{dist}-{n}"
                rate, st = ingest(path, keys, vals, rng)
                cpu = st["cpu"]
                emit(
                    {
                        "system": "engine-ingest",
                        "n": n,
                        "dist": dist,
                        "rows_per_s": rate,
                        "rows_per_writer_cpu_s": n / cpu["writer_cpu_s"],
                        "rows_per_process_cpu_s": n / cpu["process_cpu_s"],
                        **cpu,
                        "batch": INGEST_BATCH,
                        "levels": [lv["sstables"] for lv in st["levels"]],
                        "compactions": st["compactions"],
                        "flushes": st["flushes"],
                    }
                )
                hit = lookup_batches(keys, args.reps + 1, 0.0, rng)
                miss = lookup_batches(keys, args.reps + 1, 0.1, rng)
                base = {"n": n, "dist": dist}

                def emit_d(r: dict, base=base) -> None:
                    emit({**base, **r})

                t_wait = 0.2
                measure_state(path, "multi-level", hit, miss, emit_d, t_wait, False)
                tree = LSMTree(
                    path, FIELDS, TreeOptions(index="block", background=False, **TREE_OPTS)
                )
                tree.compact(full=True)
                tree.close()
                sorted_keys = np.unique(keys)
                for fit in PLR_FITS:  # both fits over the compacted run: model size, build time
                    m = PLRModel(sorted_keys, TreeOptions().delta, fit=fit)
                    emit_d(
                        {
                            "system": "plr-fit",
                            "fit": fit,
                            "segments": m.segments,
                            "model_bytes_per_key": m.nbytes / n,
                            "build_ns_per_key": m.build_ns / n,
                        }
                    )
                del sorted_keys
                full = measure_state(
                    path, "compacted", hit, miss, emit_d, t_wait, not args.no_baselines
                )
                if dist == "uniform":  # ingest again with the default TreeOptions
                    for ooo in (False, True):
                        shutil.rmtree(path)
                        rate, st = ingest(path, keys, vals, rng, opts={}, out_of_order=ooo)
                        cpu = st["cpu"]
                        name = "engine-ingest-default-options" + ("-out-of-order" if ooo else "")
                        emit(
                            {
                                "system": name,
                                "n": n,
                                "dist": dist,
                                "rows_per_s": rate,
                                "rows_per_writer_cpu_s": n / cpu["writer_cpu_s"],
                                "rows_per_process_cpu_s": n / cpu["process_cpu_s"],
                                **cpu,
                                "batch": INGEST_BATCH,
                                "levels": [lv["sstables"] for lv in st["levels"]],
                                "compactions": st["compactions"],
                                "flushes": st["flushes"],
                            }
                        )
                if not args.no_baselines:
                    if dist == "uniform":
                        rocks = rocks_baseline(root, keys, vals, hit, emit_d)
                        sqlite_baseline(root, keys, vals, hit, emit_d)
                        lh = full[("learned", "hits")]
                        summary = {
                            "learned_vs_block": full[("block", "hits")]["ns_per_key"]
                            / lh["ns_per_key"],
                            "learned_vs_rocksdb": rocks["ns_per_key"] / lh["ns_per_key"],
                            "learned_ns_per_key": lh["ns_per_key"],
                            "learned_index_bytes_per_key": lh.get("model_bytes_per_key"),
                            "n": n,
                        }
                shutil.rmtree(path)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(results)
    print(json.dumps({"summary": summary}))


def print_table(results: list[dict]) -> None:
    rows = [r for r in results if "ns_per_key" in r]
    print()
    hdr = (
        f"{'N':>9} {'dist':<16} {'state':<11} {'variant':<12} {'system':<20} "
        f"{'ns/key':>8} {'min-max':>15} {'idx B/key':>9} {'build ns/key':>12}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        ib = r.get("model_bytes_per_key", r.get("fence_bytes_per_key"))
        bn = r.get("build_ns_per_key", r.get("block_build_ns_per_key"))
        print(
            f"{r['n']:>9} {r['dist']:<16} {r['state']:<11} {r['variant']:<12} "
            f"{r['system']:<20} {r['ns_per_key']:>8.0f} "
            f"{r['min']:>7.0f}-{r['max']:<7.0f} {ib if ib is not None else float('nan'):>9.3f} "
            f"{bn if bn is not None else float('nan'):>12.1f}"
        )
    print()
    print("ratios (block ns / learned ns; auto ns / learned ns):")
    by = {(r["n"], r["dist"], r["state"], r["variant"], r["system"]): r for r in rows}
    for (n, dist, state, variant, system), r in by.items():
        if system != "engine-learned":
            continue
        b = by.get((n, dist, state, variant, "engine-block"))
        a = by.get((n, dist, state, variant, "engine-auto"))
        if b and a:
            print(
                f"  {n:>9} {dist:<16} {state:<11} {variant:<12} learned vs block "
                f"{b['ns_per_key'] / r['ns_per_key']:.2f}x  auto/learned "
                f"{a['ns_per_key'] / r['ns_per_key']:.2f}"
            )
    for r in results:
        if r.get("system", "").startswith("engine-ingest"):
            print(
                f"  {r['system']} {r['n']:>9} {r['dist']:<16} {r['rows_per_s'] / 1e6:.2f} M rows/s wall "
                f"({r['rows_per_writer_cpu_s'] / 1e6:.2f} M per writer-CPU s, "
                f"{r['rows_per_process_cpu_s'] / 1e6:.2f} M per process-CPU s; 10k batches), "
                f"levels after ingest {r['levels']}"
            )
    for r in results:
        if r.get("system") == "plr-fit":
            print(
                f"  plr fit {r['fit']:<8} {r['n']:>9} {r['dist']:<16} {r['segments']:>9,} segments "
                f"{r['model_bytes_per_key']:.3f} B/key, build {r['build_ns_per_key']:.1f} ns/key"
            )


if __name__ == "__main__":
    main()
