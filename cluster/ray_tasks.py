"""The Ray side of a cluster export: joining Ray, and the per-tablet join as a Ray task.

`ray_session()` connects this process to Ray once, lazily, on the first export:
`RICKHOUSE_RAY_ADDRESS` = `auto` or `ray://host:port` joins an existing Ray cluster; unset (or
empty), a local Ray starts with the machine's cores (`RICKHOUSE_RAY_CPUS` overrides; object
store ~200 MB, no dashboard). Ray is imported only then: a router that never exports never
pays for it.

`join_tablet` is the body of one task: it reads one tablet's **published snapshot** (the
listings of `FeatureStore.offline_files` at the tablet's pinned seq: manifest-named Parquet
files, never a glob, kept on disk a grace period after compaction replaces them) and runs the
offline package's own point-in-time join over them (`Reads.export` / `Reads.export_as_of`,
the code a single root runs), with its own DuckDB connection. Aggregation views' features are
computed from the same listings by the store's own code (store/aggregations/export.py
`aggregate_columns`, over the task's scans of the tablet's events at its seq, T = each entity
row's timestamp) and placed among the join's columns in the group's read order. It never opens the node's root
(the node holds its writer lock): a task only needs to be able to read the listed paths, i.e.
run on the node's machine or over a shared filesystem. The result comes back as the bytes of
a zstd Parquet file (compact in Ray's object store) with the join's wall time.

A task that fails on its input (a column missing or mistyped, as a root refuses it) raises a
`TaskInputError` carrying the offline store's message; anything else (a worker killed, a file
gone) surfaces to the caller as Ray's error. Ray retries a task whose worker died
(`TASK_RETRIES`); a result is only ever a whole file.

Thread-safety: `ray_session` is serialized by a lock; the task is a pure function of its
arguments.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from cluster.errors import ClusterError
from offline import FeatureQuery, OfflineError, OfflineOptions
from offline.manifest import FileEntry
from offline.reads import Reads
from offline.snapshot_files import listing_schema
from offline.source import ViewSnapshot

if TYPE_CHECKING:
    from store.definitions import FeatureView

RAY_ADDRESS_ENV = "RICKHOUSE_RAY_ADDRESS"  # "auto", "ray://host:port"; unset: a local Ray
RAY_CPUS_ENV = "RICKHOUSE_RAY_CPUS"  # a local Ray's CPUs (default: the machine's cores)
# Tests only: a file holding a number of seconds each task sleeps before its join, so a test
# can kill a worker mid-export. Absent file: no pause.
PAUSE_FILE_ENV = "RICKHOUSE_TEST_TASK_PAUSE_FILE"
OBJECT_STORE_BYTES = 200 * 2**20
TASK_RETRIES = 1  # re-runs of a task whose worker died
_EPOCH = dt.date(1970, 1, 1)

_lock = threading.Lock()
_remote: Any = None  # GUARDED_BY(_lock): the ray.remote of join_tablet, once Ray is up


class RayUnavailableError(ClusterError):
    """Ray cannot be imported or joined: no export can run."""


class TaskInputError(Exception):
    """A tablet's join refused its input (the offline store's message): a client error."""


@dataclass(frozen=True)
class TabletJob:
    """One task's work: the entity rows of one tablet (None: entities as of an instant) joined
    with `queries` over the tablet's listings at `seq`."""

    partition: int
    seq: int  # the tablet's pinned seq: rows with _seq <= seq
    listings: dict[str, dict[str, Any]]  # storage name -> FeatureStore.offline_files listing
    queries: list[FeatureQuery]
    entities: pa.Table | None
    entities_as_of_ns: int | None = None
    null_before: dict[str, int] | None = None  # storage name -> cutoff ns (retention)
    duckdb_threads: int = 1
    full_names: bool = False  # the join's columns named `<storage>__<feature>`
    aggregates: tuple[AggregateRead, ...] = ()  # computed, not joined (entity rows only)


@dataclass(frozen=True)
class AggregateRead:
    """An aggregation view's features in a task: `position` is the read's index among the
    task's reads (the plain ones being `queries`, in order)."""

    position: int
    storage: str
    view: FeatureView
    features: tuple[str, ...]


def ray_session() -> Any:
    """The remote function of `join_tablet`, Ray connected on the first call (module doc)."""
    global _remote
    with _lock:
        if _remote is not None:
            return _remote
        try:
            import ray
        except ImportError:
            raise RayUnavailableError(
                "cluster exports run on Ray, which is not installed: "
                "pip install 'rickhouse[cluster]'"
            ) from None
        address = os.environ.get(RAY_ADDRESS_ENV, "").strip()
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    cpus = int(os.environ.get(RAY_CPUS_ENV) or os.cpu_count() or 1)
                    ray.init(
                        num_cpus=cpus,
                        object_store_memory=OBJECT_STORE_BYTES,
                        include_dashboard=False,
                        log_to_driver=False,
                    )
            except Exception as exc:  # unreachable address, no room to start: say which
                where = f"the Ray cluster at {address!r}" if address else "a local Ray"
                raise RayUnavailableError(f"cannot start or join {where}: {exc}") from None
        _remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(join_tablet)
        return _remote


def shutdown_ray() -> None:
    """Stop the Ray this process started or joined (its local cluster's processes with it);
    the next export connects again. A no-op when no export ran."""
    global _remote
    with _lock:
        if _remote is None:
            return
        import ray

        ray.shutdown()
        _remote = None


def join_tablet(job: TabletJob) -> tuple[bytes, int, float, float]:
    """Run one tablet's join (module docstring): (zstd Parquet bytes, rows, join seconds,
    join CPU seconds of the worker process)."""
    _test_pause()
    started, cpu = time.perf_counter(), time.process_time()
    work = Path(tempfile.mkdtemp(prefix="rickhouse-task-"))
    snaps = {s: snapshot_of(s, listing, job.seq) for s, listing in job.listings.items()}
    con = duckdb.connect(":memory:", config={"threads": job.duckdb_threads})
    options = OfflineOptions(duckdb_threads=job.duckdb_threads, background=False)
    reads = Reads(lambda views: {v: snaps[v] for v in views}, lambda _s: None, con.cursor,
                  options, work / "tmp")  # fmt: skip
    out = work / "part.parquet"
    full, nb = job.full_names, job.null_before
    try:
        if job.entities_as_of_ns is not None:
            res = reads.export_as_of(job.queries, job.entities_as_of_ns, out, job.seq, full, nb)
            rows = int(res.rows)
        elif job.aggregates:
            assert job.entities is not None
            rows = _with_aggregates(job, reads, out)
        else:
            assert job.entities is not None
            rows = int(reads.export(job.entities, job.queries, out, job.seq, full, nb).rows)
        wall = time.perf_counter() - started
        return out.read_bytes(), rows, wall, time.process_time() - cpu
    except OfflineError as exc:
        raise TaskInputError(str(exc)) from None
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)


def _with_aggregates(job: TabletJob, reads: Reads, out: Path) -> int:
    """The task's result with aggregation reads: the plain join (if any), then each
    aggregation read's columns inserted at its place in the read order; rows in input order."""
    from store.aggregations.export import aggregate_columns  # its kernels: only when needed

    ents = job.entities
    assert ents is not None
    joined = ents
    if job.queries:
        part = out.with_name("plain.parquet")
        reads.export(ents, job.queries, part, job.seq, job.full_names, job.null_before)
        joined = pq.read_table(part)
    width = ents.num_columns
    columns, names = joined.columns[:width], joined.column_names[:width]
    plain = iter(job.queries)
    at = width
    by_position = {a.position: a for a in job.aggregates}
    for i in range(len(job.queries) + len(job.aggregates)):
        agg = by_position.get(i)
        if agg is None:
            n = len(next(plain).features)
            columns += joined.columns[at : at + n]
            names += joined.column_names[at : at + n]
            at += n
            continue
        off = cast(Any, reads)  # a Reads scans as an OfflineStore does (offline/reads.py)
        cols = aggregate_columns(off, agg.storage, agg.view, agg.features, ents, job.seq)
        columns += cols
        names += [f"{agg.storage}__{f}" if job.full_names else f for f in agg.features]
    pq.write_table(pa.Table.from_arrays(columns, names=names), str(out), compression="zstd")
    return ents.num_rows


def snapshot_of(storage: str, listing: dict[str, Any], seq: int) -> ViewSnapshot:
    """The offline snapshot a listing describes (its files, no in-memory buffer: the listing
    holds every row up to its seq), as the offline reads take it."""
    stored = listing_schema(listing)
    schema = pa.schema([f for f in stored if f.name not in ("_seq", "_row")])
    files = tuple(
        FileEntry(
            path=f["path"],  # absolute: ViewSnapshot.view_dir / path is the path itself
            day=(dt.date.fromisoformat(f["date"]) - _EPOCH).days,
            rows=int(f["rows"]),
            bytes=int(f["bytes"]),
            min_seq=int(f["min_seq"]),
            max_seq=int(f["max_seq"]),
            columns=tuple(f["columns"]),
        )
        for f in listing["files"]
    )
    return ViewSnapshot(storage, schema, tuple(listing["keys"]), Path("/"), files, (), seq)


def _test_pause() -> None:
    path = os.environ.get(PAUSE_FILE_ENV)
    if not path:
        return
    try:
        seconds = float(Path(path).read_text().strip() or 0)
    except (OSError, ValueError):
        return
    time.sleep(seconds)
