"""Benchmark of the feature server: HTTP load from a second process on 127.0.0.1.

    .venv/bin/python bench/serve.py            # 20 s per run (about 7 minutes in all)
    .venv/bin/python bench/serve.py --quick    # 4 s per run, smaller data

What it does, bounded in count and time:
1. builds a store of N entities (1M; --quick 200k) x 8 features in one view, in-process, and a
   Parquet file of N entity rows for training exports; then starts `rickhouse serve` on a free
   port of 127.0.0.1 in its own process;
2. drives POST /get-online-features with wrk (C, a Lua script making random entity bodies),
   at concurrency 8 and 32, with 1 and 100 entities x 8 features per request;
3. the same 1-entity load at concurrency 8 while N-row training exports run back to back, and
   while Arrow IPC ingests of 100k-row batches run back to back;
4. Arrow IPC ingest over HTTP alone: rows/s acknowledged (each batch fsynced before its 200);
5. --isolation-rounds (3) pairs of 1-entity runs back to back, alone then during exports: the
   export-isolation target is checked on the median of their p99 ratios (--only-isolation runs
   just these after the warm-up).

wrk comes from Debian's packages: the script uses it when found, else installs it with
`apt-get install -y wrk` when running as root, else stops and says so.
Prints the machine, data sizes, one JSON line per run, a table, and the targets met or missed.
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
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO / "bench" / "_data" / "serve"
VIEW = "bench_user"
FEATURES = [f"f{i}" for i in range(8)]
DTYPES = ["float32", "float32", "float32", "float32", "float64", "int64", "int32", "string"]
REFS = [f"{VIEW}:{f}" for f in FEATURES]
START_NS = int(np.datetime64("2025-01-01T00:00:00", "ns").astype(np.int64))
DAY_NS = 86_400 * 10**9
DEFINITIONS = {
    "entities": [{"name": "user", "join_keys": ["user_id"], "dtype": "int64"}],
    "feature_views": [
        {
            "name": VIEW,
            "entities": ["user"],
            "ttl": 0,
            "features": [{"name": f, "dtype": d} for f, d in zip(FEATURES, DTYPES, strict=True)],
        }
    ],
}

LUA = r"""
local n_entities = __N__
local batch = __BATCH__
local features = '__FEATURES__'
local threads_n = 0
function setup(thread)
  threads_n = threads_n + 1
  thread:set("tid", threads_n)
end
function init(args)
  math.randomseed(1000 + tid)
end
request = function()
  local ids = {}
  for i = 1, batch do ids[i] = math.random(1, n_entities) end
  local body = '{"entities":{"user_id":[' .. table.concat(ids, ",") .. ']},"features":' .. features .. '}'
  return wrk.format("POST", "/get-online-features", {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        print(f"# wrk found at {path}")
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("# wrk not found: installing it with `apt-get install -y wrk`")
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
        path = shutil.which("wrk")
        if path:
            return path
    sys.exit("wrk is needed (Debian: apt-get install -y wrk); it is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "mem_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def feature_batch(rng: np.random.Generator, users: np.ndarray, day: int) -> pa.Table:
    n = len(users)
    ts = START_NS + day * DAY_NS + rng.integers(0, DAY_NS, n, dtype=np.int64)
    cols = {
        "user_id": pa.array(users, pa.int64()),
        "event_timestamp": pa.array(ts, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
    }
    for f, d in zip(FEATURES, DTYPES, strict=True):
        if d.startswith("float"):
            cols[f] = pa.array(rng.random(n).astype(d), getattr(pa, d)())
        elif d == "int64":
            cols[f] = pa.array(rng.integers(0, 10**6, n), pa.int64())
        elif d == "int32":
            cols[f] = pa.array(rng.integers(0, 1000, n).astype(np.int32), pa.int32())
        else:
            cols[f] = pa.array(np.char.add("c", (users % 97).astype(str)), pa.string())
    return pa.table(cols)


def prepare(n: int, batch_rows: int) -> dict:
    """A fresh store of n entities (ids 1..n) x 8 features, and an n-row entity file."""
    from store import FeatureStore

    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    rng = np.random.default_rng(42)
    t0 = time.perf_counter()
    with FeatureStore(DATA) as fs:
        fs.apply(DEFINITIONS)
        users = np.arange(1, n + 1, dtype=np.int64)
        for i in range(0, n, batch_rows):
            fs.ingest(VIEW, feature_batch(rng, users[i : i + batch_rows], day=0))
        seq = fs.last_seq
    load_s = time.perf_counter() - t0
    entities = pa.table(
        {
            "user_id": pa.array(rng.integers(1, n + 1, n), pa.int64()),
            "event_timestamp": pa.array(
                START_NS + rng.integers(DAY_NS // 2, 30 * DAY_NS, n, dtype=np.int64), pa.int64()
            ).cast(pa.timestamp("ns", tz="UTC")),
            "label": pa.array(rng.random(n) < 0.1),
        }
    )
    pq.write_table(entities, DATA / "bench_entities.parquet")
    return {"entities": n, "features": len(FEATURES), "load_s": round(load_s, 2), "seq": seq}


class Server:
    def __init__(self, port: int, server_env: dict[str, str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(DATA / "server.log", "w")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if not k.startswith("RICKHOUSE_")}
        env.update(server_env)
        self.proc = subprocess.Popen(
            [
                str(REPO / ".venv" / "bin" / "rickhouse"),
                "serve",
                "--root",
                str(DATA),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"server exited with {self.proc.returncode}; see {DATA / 'server.log'}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        sys.exit("server did not become healthy in 180 s")

    def rss_mib(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_wrk(wrk: str, url: str, n: int, batch: int, conns: int, seconds: float) -> dict:
    script = LUA.replace("__N__", str(n)).replace("__BATCH__", str(batch))
    script = script.replace("__FEATURES__", json.dumps(REFS))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [
                wrk,
                "-t2",
                f"-c{conns}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "5s",
                "-s",
                f.name,
                url + "/get-online-features",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    r = json.loads(line[len("WRKJSON ") :])
    errors = sum(v for k, v in r.items() if k.startswith("errors_"))
    return {
        "req_s": round(r["requests"] / (r["duration_us"] / 1e6), 1),
        "p50_ms": r["p50_us"] / 1000,
        "p90_ms": r["p90_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        "requests": r["requests"],
        "errors": errors,
    }


class Background(threading.Thread):
    """Repeats one HTTP job until stopped; records each job's seconds and result."""

    def __init__(self, job) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.job = job
        self.stop_event = threading.Event()
        self.done: list[tuple[float, float, dict]] = []  # (start, end, result)
        self.failures: list[str] = []

    def run(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            t0 = time.perf_counter()
            try:
                result = self.job(i)
            except Exception as exc:  # noqa: BLE001 -- a benchmark reports, never hides
                self.failures.append(repr(exc))
                time.sleep(0.5)
                continue
            self.done.append((t0, time.perf_counter(), result))
            i += 1


def export_job(client: httpx.Client, url: str):  # noqa: ANN201
    def job(i: int) -> dict:
        r = client.post(
            url + "/v1/training-export",
            json={
                "entities_path": "bench_entities.parquet",
                "features": REFS,
                "output": "file",
                "out": f"bench-{os.getpid()}-{i}.parquet",
            },
            timeout=600,
        )
        r.raise_for_status()
        info = r.json()
        Path(info["path"]).unlink(missing_ok=True)
        return info

    return job


def arrow_bodies(n: int, rows: int, count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    bodies = []
    for k in range(count):
        users = rng.integers(1, n + 1, rows).astype(np.int64)
        table = feature_batch(rng, users, day=1 + k % 28)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        bodies.append(sink.getvalue().to_pybytes())
    return bodies


def ingest_job(client: httpx.Client, url: str, bodies: list[bytes]):  # noqa: ANN201
    def job(i: int) -> dict:
        r = client.post(
            url + f"/v1/ingest/{VIEW}",
            content=bodies[i % len(bodies)],
            headers={"Content-Type": "application/vnd.apache.arrow.stream"},
            timeout=120,
        )
        r.raise_for_status()
        return r.json()

    return job


def overlapped(bg: Background, t0: float, t1: float) -> float:
    """Fraction of [t0, t1] during which a background job was running."""
    busy = sum(max(0.0, min(e, t1) - max(s, t0)) for s, e, _ in bg.done)
    return round(busy / (t1 - t0), 2)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="4 s runs, 200k entities")
    ap.add_argument("--seconds", type=float, default=None, help="seconds per run")
    ap.add_argument("--entities", type=int, default=None)
    ap.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the server, e.g. RICKHOUSE_INLINE_LOOKUPS=1",
    )
    ap.add_argument("--reuse-data", action="store_true", help="keep bench/_data/serve if present")
    ap.add_argument(
        "--isolation-rounds",
        type=int,
        default=3,
        help="pairs of 1-entity runs (alone, then during exports) for the isolation target",
    )
    ap.add_argument(
        "--only-isolation", action="store_true", help="warm up, then only the isolation rounds"
    )
    args = ap.parse_args()
    seconds = args.seconds or (4.0 if args.quick else 20.0)
    n = args.entities or (200_000 if args.quick else 1_000_000)
    wrk = find_wrk()

    info = machine()
    print(f"# machine: {json.dumps(info)}")
    print(f"# preparing {n:,} entities x {len(FEATURES)} features ({', '.join(DTYPES)}) ...")
    marker = DATA / f"prepared-{n}.json"
    if args.reuse_data and marker.exists():
        data = json.loads(marker.read_text())
    else:
        data = prepare(n, 100_000)
        marker.write_text(json.dumps(data))
    print(f"# data: {json.dumps(data)}")
    server_env = dict(item.split("=", 1) for item in args.server_env)
    print(f"# server environment: {json.dumps(server_env)}")
    server = Server(free_port(), server_env)
    results: list[dict] = []

    def record(name: str, conns: int, batch: int, r: dict, **extra: object) -> dict:
        row = {
            "bench": "serve",
            "run": name,
            "concurrency": conns,
            "entities_per_request": batch,
            "features": len(FEATURES),
            "seconds": seconds,
            **r,
            **extra,
        }
        results.append(row)
        print(json.dumps(row), flush=True)
        return row

    def during_export(client: httpx.Client, alone: dict, name: str) -> dict:
        """The 1-entity c=8 load while N-row training exports run back to back."""
        bg = Background(export_job(client, server.url))
        bg.start()
        time.sleep(1.0)  # let the export get going
        t0 = time.perf_counter()
        r = run_wrk(wrk, server.url, n, 1, 8, seconds)
        t1 = time.perf_counter()
        bg.stop_event.set()
        bg.join()
        exports = [res for _, _, res in bg.done]
        return record(
            name,
            8,
            1,
            r,
            exports_done=len(exports),
            export_rows=exports[0]["rows"] if exports else 0,
            export_s=[round(e - s, 1) for s, e, _ in bg.done],
            export_overlap=overlapped(bg, t0, t1),
            export_failures=bg.failures[:3],
            p99_vs_alone=round(r["p99_ms"] / max(alone["p99_ms"], 1e-9), 2),
        )

    def isolation_rounds(client: httpx.Client) -> None:
        """Pairs of runs back to back (alone, then during exports): the machine's drift between
        the first runs and the export run cannot bias the ratio."""
        for k in range(args.isolation_rounds):
            alone = record(
                f"isolation {k + 1}: alone", 8, 1, run_wrk(wrk, server.url, n, 1, 8, seconds)
            )
            during_export(client, alone, f"isolation {k + 1}: during export")

    try:
        run_wrk(wrk, server.url, n, 1, 8, min(seconds, 4))  # warm up (numba, caches, pages)
        if args.only_isolation:
            with httpx.Client() as client:
                isolation_rounds(client)
        else:
            base: dict[tuple[int, int], dict] = {}
            for batch in (1, 100):
                for conns in (8, 32):
                    base[(conns, batch)] = record(
                        "online", conns, batch, run_wrk(wrk, server.url, n, batch, conns, seconds)
                    )

            with httpx.Client() as client:
                during_export(client, base[(8, 1)], "online during export")

                bodies = arrow_bodies(n, 100_000, 4, seed=7)
                bg = Background(ingest_job(client, server.url, bodies))
                bg.start()
                time.sleep(0.5)
                t0 = time.perf_counter()
                r = run_wrk(wrk, server.url, n, 1, 8, seconds)
                t1 = time.perf_counter()
                bg.stop_event.set()
                bg.join()
                rows = sum(res["rows"] for _, _, res in bg.done)
                busy = sum(e - s for s, e, _ in bg.done)
                record(
                    "online during ingest",
                    8,
                    1,
                    r,
                    ingested_rows=rows,
                    ingest_rows_s=round(rows / busy) if busy else 0,
                    ingest_overlap=overlapped(bg, t0, t1),
                    ingest_failures=bg.failures[:3],
                    p99_vs_alone=round(r["p99_ms"] / max(base[(8, 1)]["p99_ms"], 1e-9), 2),
                )

                # Arrow IPC ingest alone: one client, then two (concurrent batches share fsyncs).
                count = 8 if args.quick else 20
                for clients in (1, 2):
                    jobs = [ingest_job(client, server.url, bodies) for _ in range(clients)]
                    t0 = time.perf_counter()
                    per_client = count // clients
                    threads = [
                        threading.Thread(target=lambda j=j, k=per_client: [j(i) for i in range(k)])
                        for j in jobs
                    ]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    elapsed = time.perf_counter() - t0
                    total = (count // clients) * clients * 100_000
                    row = {
                        "bench": "serve",
                        "run": "arrow ingest over HTTP",
                        "clients": clients,
                        "batch_rows": 100_000,
                        "batches": (count // clients) * clients,
                        "rows": total,
                        "seconds": round(elapsed, 2),
                        "rows_s": round(total / elapsed),
                        "durable": True,
                    }
                    results.append(row)
                    print(json.dumps(row), flush=True)
                isolation_rounds(client)
                audit = client.post(server.url + "/v1/audit", timeout=600).json()
                mismatches = sum(v.get("mismatches", 0) for v in audit.values())
                print(
                    json.dumps({"bench": "serve", "run": "audit after", "mismatches": mismatches})
                )
        rss = server.rss_mib()
    finally:
        server.stop()
    report(results, info, rss, full=not args.only_isolation)


def report(results: list[dict], info: dict, rss: float, full: bool) -> None:
    """The table of every run, the isolation rounds' median, and the targets met or missed."""
    print(
        f"\n# server RSS at the end: {rss:.0f} MiB; machine: {info['cpus']} cores, "
        f"{info['mem_gib']} GiB; other work may be running on this machine at the same time\n"
    )
    print("| run | conc. | entities/req | req/s | p50 ms | p99 ms | errors | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if "req_s" not in r:
            continue
        notes = ""
        if "p99_vs_alone" in r:
            notes = f"p99 {r['p99_vs_alone']}x alone"
            if "exports_done" in r:
                notes += f"; {r['exports_done']} exports of {r['export_rows']:,} rows, overlap {r['export_overlap']}"
            else:
                notes += f"; {r['ingested_rows']:,} rows ingested meanwhile, overlap {r['ingest_overlap']}"
        print(
            f"| {r['run']} | {r['concurrency']} | {r['entities_per_request']} | {r['req_s']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {notes} |"
        )
    for r in results:
        if "rows_s" in r:
            print(
                f"| arrow ingest, {r['clients']} client(s) | | {r['batch_rows']:,} rows/batch | "
                f"{r['rows_s']:,} rows/s | | | 0 | {r['rows']:,} rows in {r['seconds']} s, durable |"
            )

    pairs = [
        r["p99_vs_alone"]
        for r in results
        if r["run"].startswith("isolation ") and "p99_vs_alone" in r
    ]
    isolation = float(np.median(pairs)) if pairs else None
    if pairs:
        print(
            f"\n# isolation rounds: p99 during export / p99 alone = {pairs}, median {isolation:.2f}x"
        )
    if not full:
        return
    by = {(r["run"], r.get("concurrency"), r.get("entities_per_request")): r for r in results}
    one = by[("online", 8, 1)]
    hundred = [by[("online", c, 100)] for c in (8, 32)]
    exp = by[("online during export", 8, 1)]
    ingest_best = max(r["rows_s"] for r in results if "rows_s" in r)
    checks = [
        ("1 entity, c=8: >= 2,500 req/s", one["req_s"] >= 2500, f"{one['req_s']:,.0f} req/s"),
        ("1 entity, c=8: p99 <= 10 ms", one["p99_ms"] <= 10, f"{one['p99_ms']:.2f} ms"),
        (
            "100 entities: >= 1,000 req/s",
            max(h["req_s"] for h in hundred) >= 1000,
            " / ".join(f"c={h['concurrency']}: {h['req_s']:,.0f}" for h in hundred),
        ),
        (
            "zero errors",
            all(r.get("errors", 0) == 0 for r in results),
            str(sum(r.get("errors", 0) for r in results)),
        ),
        (
            "p99 during export <= 2x alone (median of the paired isolation rounds)",
            (isolation if isolation is not None else exp["p99_vs_alone"]) <= 2,
            f"median {isolation}x of {pairs}; first export run {exp['p99_vs_alone']}x",
        ),
        (
            "Arrow IPC ingest >= 200k rows/s durable",
            ingest_best >= 200_000,
            f"{ingest_best:,} rows/s",
        ),
    ]
    print("\n# targets")
    for name, ok, value in checks:
        print(f"- {'MET   ' if ok else 'MISSED'} {name}: {value}")


if __name__ == "__main__":
    main()
