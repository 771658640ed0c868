"""Training exports over a cluster: entity rows scattered by partition, one Ray task per tablet,
results gathered in input order into one Parquet file, exactly as a single root writes it.

The steps (the router runs them; app/router_export.py is the HTTP face):
1. `prepare`: resolve the features against the applied definitions (the store's planner), cast
   the entity rows as a root does (`store.training.entity_table`), and scatter them: for each
   routing group of the views read (views of one routing key: their join keys, or the entity
   of `partition_by`) every row has one partition (cluster/partitioning.py). `replicate: all`
   views are joined in the first group's tasks (every tablet holds them); if every view is
   replicated, the rows are cut into P contiguous chunks. With `entities_as_of` there are no
   rows: every tablet exports its own entities.
2. `pin_tablets`: one replica per partition pins its tablet at a seq and lists the published
   snapshot files of the views read at that seq (`list_tablets`, run by the node: the position
   must be applied, else the replica is behind and another one is tried). The export's
   **position** is {partition: applied offset}, the offset of the last record each tablet
   holds at its pinned seq (seq = offset + 1), in the style of an ingest answer's position;
   `as_of_position` pins every tablet at that vector again, so the export is reproduced
   whatever was ingested since (listed files outlive compaction by a grace period).
3. `run`: one Ray task per (group, partition) with rows (cluster/ray_tasks.py), gathered in
   input order (or, with `entities_as_of`, ordered by key as a root orders them), written to a
   temp file and renamed: a failed task (a killed worker after its retry) fails the whole
   export and nothing is left at the output path.
cluster/export_computed.py wraps these steps for on-demand features. Aggregation views route by
their entity like any view; their tasks compute them (cluster/ray_tasks.py) from entity rows.
Pure functions but for `pin_tablets` (HTTP to the nodes through the router's client) and
`run` (Ray, the output file); safe from any thread, `pin_tablets` on the router's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from cluster.errors import ClusterError, RoutingError
from cluster.export_gather import gather, retention
from cluster.partitioning import Routing, view_routing
from cluster.ray_tasks import AggregateRead, TabletJob, TaskInputError, ray_session
from offline import FeatureQuery
from store import Definitions, FeatureStore
from store.errors import ValidationError
from store.features import FeaturePlan, plan_features
from store.training import entities_as_of_ns, entity_table

if TYPE_CHECKING:
    from cluster.router import Router

LISTINGS_PATH = "/v1/export/listings"  # the node endpoint `pin_tablets` asks
PIN_WAIT_MS = 10_000  # bound on a replica catching up to the position asked


class ExportFailedError(ClusterError):
    """A tablet's join failed for a reason other than its input (a worker killed twice, a
    listed file unreadable): the export as a whole failed and wrote nothing."""


class TabletPinError(ClusterError):
    """A replica refused to pin or list a tablet; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Group:
    """Views read together in one task per partition: `reads` index the plan's reads."""

    reads: tuple[int, ...]
    rows: dict[int, np.ndarray]  # partition -> entity row indices (ascending); {} as of


@dataclass(frozen=True)
class ExportSpec:
    plan: FeaturePlan
    entities: pa.Table | None  # cast as a root casts them; None with entities_as_of
    entities_as_of_ns: int | None
    groups: tuple[Group, ...]
    cutoffs: dict[str, int] = field(default_factory=dict)  # view -> retention cutoff ns
    computed: FeaturePlan | None = None  # the plan asked, when it has on-demand features

    @property
    def views(self) -> list[str]:
        return list(dict.fromkeys(r.view.name for r in self.plan.reads))


@dataclass(frozen=True)
class TabletPin:
    offset: int  # applied offset at the pinned seq = offset + 1 (-1: nothing applied)
    listings: dict[str, dict[str, Any]]  # view -> FeatureStore.offline_files listing


# ---------------------------------------------------------------------------- 1. prepare


def prepare(
    defs: Definitions,
    features: str | Sequence[str],
    entities: Any,
    entities_as_of: Any,
    partitions: int,
    now_ns: int | None = None,
    full_feature_names: bool = False,
) -> ExportSpec:
    """Plan and scatter an export (module docstring, step 1). `entities`: a table or a Parquet
    path; exactly one of it and `entities_as_of`. Raises the store's errors (4xx)."""
    plan = plan_features(defs, features, full_feature_names)
    if plan.on_demand is not None:
        raise ValidationError("on-demand features are exported by cluster/export_computed.py")
    if entities_as_of is not None and any(r.view.is_aggregation for r in plan.reads):
        raise ValidationError(  # as a root refuses it
            "aggregation features need entity rows; pass entities instead"
        )
    now = time.time_ns() if now_ns is None else now_ns
    cutoffs = {
        r.view.name: now - r.view.retention_ns
        for r in plan.reads
        if r.view.retention_ns and not r.view.is_aggregation  # a root's plain join's only
    }
    routes = [placement(defs, r.view.name) for r in plan.reads]
    if entities_as_of is not None:
        ts = entities_as_of_ns(entities_as_of)
        replicated = [r.replicate for r in routes]
        if any(replicated) and not all(replicated):
            raise ValidationError(
                "entities_as_of through the cluster router reads partitioned views or "
                "`replicate: all` views, not both in one export"
            )
        every = range(1 if all(replicated) else partitions)
        group = Group(tuple(range(len(routes))), {p: np.zeros(0, np.int64) for p in every})
        return ExportSpec(plan, None, ts, (group,), cutoffs)
    if isinstance(entities, (str, Path)):
        entities = pq.read_table(str(entities))
    table = entity_table(entities, plan)
    assert isinstance(table, pa.Table)  # a table in, a table out
    if table.num_rows == 0:
        raise ValidationError("the entity rows are empty")
    table = table.combine_chunks()
    return ExportSpec(plan, table, None, scatter(table, routes, partitions), cutoffs)


def placement(defs: Definitions, view: str) -> Routing:
    """Where the rows of `view` live: its join keys, `partition_by`'s keys, or every tablet."""
    fv = defs.feature_views[view]
    ents = {e: list(defs.entities[e].join_keys) for e in fv.entities}
    by, everywhere = getattr(fv, "partition_by", None), bool(getattr(fv, "replicate", False))
    return view_routing(fv.join_keys, ents, by, everywhere)


def scatter(table: pa.Table, routes: Sequence[Routing], partitions: int) -> tuple[Group, ...]:
    """The groups of reads (same routing columns) and each one's rows per partition."""
    by_cols: dict[tuple[str, ...], list[int]] = {}
    for i, r in enumerate(routes):
        if not r.replicate:
            by_cols.setdefault(r.columns, []).append(i)
    everywhere = [i for i, r in enumerate(routes) if r.replicate]
    n = table.num_rows
    if not by_cols:  # only replicated views: P contiguous chunks of the rows
        bounds = np.linspace(0, n, partitions + 1).astype(np.int64)
        rows = {p: np.arange(bounds[p], bounds[p + 1]) for p in range(partitions)}
        return (Group(tuple(everywhere), {p: r for p, r in rows.items() if len(r)}),)
    groups = []
    for k, (cols, reads) in enumerate(by_cols.items()):
        try:
            parts = Routing(columns=cols).partitions(table, partitions)
        except RoutingError as exc:
            raise ValidationError(f"entity rows: {exc}") from None
        order = np.argsort(parts, kind="stable")
        counts = np.bincount(parts, minlength=partitions)
        starts = np.concatenate(([0], np.cumsum(counts)))
        rows = {p: order[starts[p] : starts[p + 1]] for p in range(partitions) if counts[p]}
        groups.append(Group(tuple(reads + (everywhere if k == 0 else [])), rows))
    return tuple(groups)


# ---------------------------------------------------------------------------- 2. pin


async def pin_tablets(
    router: Router, views: list[str], as_of_position: Mapping[int, int] | None
) -> dict[int, TabletPin]:
    """Pin every partition's tablet at `as_of_position` (default: what a replica has applied,
    at least what this router acknowledged) and list the snapshot files of `views` there."""
    partitions = router.config.partitions
    if as_of_position is not None:
        missing = [p for p in range(partitions) if p not in as_of_position]
        stray = sorted(p for p in as_of_position if not 0 <= p < partitions)
        if missing or stray:
            raise ValidationError(
                f"'as_of_position' must name every partition 0..{partitions - 1} and no "
                f"other; missing {missing}, unknown {stray}"
            )
        required = {p: int(as_of_position[p]) for p in range(partitions)}
    else:
        required = router.writer.acked()
    pins: dict[int, TabletPin] = {}
    tried: dict[int, set[str]] = {p: set() for p in range(partitions)}
    todo = list(range(partitions))
    while todo:
        by_node: dict[str, list[int]] = {}
        for p in todo:
            by_node.setdefault(router._choose(p, required, tried[p]), []).append(p)
        answers = await asyncio.gather(
            *(
                _list_on(router, name, ps, views, required, as_of_position)
                for name, ps in by_node.items()
            )
        )
        todo = []
        for name, (got, failed) in zip(by_node, answers, strict=True):
            pins.update(got)
            for p in failed:
                tried[p].add(name)
                todo.append(p)
    return pins


async def _list_on(
    router: Router,
    name: str,
    ps: list[int],
    views: list[str],
    required: Mapping[int, int],
    as_of_position: Mapping[int, int] | None,
) -> tuple[dict[int, TabletPin], list[int]]:
    """Ask node `name` to pin and list partitions `ps`: (pins, partitions to try elsewhere)."""
    body = {
        "partitions": {str(p): (as_of_position[p] if as_of_position else None) for p in ps},
        "min_position": {str(p): required[p] for p in ps if required.get(p, -1) >= 0},
        "views": views,
        "wait_ms": PIN_WAIT_MS,
    }
    url = f"{router.nodes[name].config.url}{LISTINGS_PATH}"
    try:
        async with router._http().post(url, data=orjson.dumps(body)) as r:
            status, payload = r.status, await r.read()
    except Exception as exc:  # unreachable, timed out: another replica may serve
        why = f"{type(exc).__name__}: {exc}"
        router.nodes[name] = replace(router.nodes[name], alive=False, error=why)
        return {}, ps
    if status == 503:  # behind the position asked: another replica may be there
        return {}, ps
    if status != 200:
        raise TabletPinError(status if status < 500 else 503, f"node {name}: {_detail(payload)}")
    got = orjson.loads(payload)["partitions"]
    return {int(p): TabletPin(int(v["offset"]), v["views"]) for p, v in got.items()}, []


def list_tablets(
    stores: Mapping[int, FeatureStore], partitions: Mapping[int, int | None], views: list[str]
) -> dict[str, Any]:
    """The node's half of `pin_tablets`: for each partition, its tablet pinned at the offset
    asked (None: what it applied) and the listing of `views` there. Raises ValidationError
    when an offset asked is ahead of the tablet (the caller waited for it first)."""
    out: dict[str, Any] = {}
    for p, offset in partitions.items():
        fs = stores[p]
        last = fs.last_seq
        seq = last if offset is None else int(offset) + 1
        if seq > last or seq < 0:
            raise ValidationError(
                f"partition {p}: offset {offset} is not applied (applied offset {last - 1})"
            )
        listed = {v: fs.offline_files(v, seq) for v in views}
        out[str(p)] = {"offset": seq - 1, "views": listed}
    return {"partitions": out}


# ---------------------------------------------------------------------------- 3. run


@dataclass
class ExportOutcome:
    rows: int
    position: dict[int, int]
    path: str
    outside_retention: dict[str, int]
    timings: dict[str, float]
    tasks: int


def run(spec: ExportSpec, pins: Mapping[int, TabletPin], out_path: str | Path) -> ExportOutcome:
    """Blocking: the tasks, the gather, the output file (module docstring, step 3)."""
    import ray

    t0 = time.perf_counter()
    remote = ray_session()
    t_ray = time.perf_counter()
    null_before, outside = retention(spec, pins)
    jobs = [(g, p, _job(spec, g, p, pins[p], null_before)) for g in spec.groups for p in g.rows]
    refs = [remote.remote(job) for _, _, job in jobs]
    try:
        answers = ray.get(refs)
    except Exception as exc:
        for ref in refs:
            ray.cancel(ref, force=True)
        cause = getattr(exc, "cause", None)
        if isinstance(cause, TaskInputError) or isinstance(exc, TaskInputError):
            raise ValidationError(str(cause or exc)) from None
        raise ExportFailedError(
            f"the export failed and wrote nothing: a tablet's join did not finish "
            f"({type(exc).__name__}: {str(exc)[:500]})"
        ) from None
    t_tasks = time.perf_counter()
    parts = [pq.read_table(pa.BufferReader(a[0])).replace_schema_metadata(None) for a in answers]
    table = gather(spec, [(g, p) for g, p, _ in jobs], parts)
    out = Path(out_path)
    temp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        pq.write_table(table, str(temp), compression="zstd")
        os.replace(temp, out)
    finally:
        temp.unlink(missing_ok=True)
    t_end = time.perf_counter()
    joins = [a[2] for a in answers]
    timings = {
        "ray_init_s": t_ray - t0,
        "tasks_s": t_tasks - t_ray,  # dispatch, the joins, and the results back
        "join_max_s": max(joins, default=0.0),
        "join_sum_s": sum(joins),
        "join_cpu_sum_s": sum(a[3] for a in answers),
        "gather_write_s": t_end - t_tasks,
    }
    position = {p: pin.offset for p, pin in sorted(pins.items())}
    return ExportOutcome(table.num_rows, position, str(out), outside, timings, len(jobs))


def _job(
    spec: ExportSpec, g: Group, p: int, pin: TabletPin, null_before: Mapping[str, int]
) -> TabletJob:
    reads = [spec.plan.reads[i] for i in g.reads]
    listings = {pin.listings[r.view.name]["storage"]: pin.listings[r.view.name] for r in reads}
    store = {r.view.name: pin.listings[r.view.name]["storage"] for r in reads}
    queries = [
        FeatureQuery(store[r.view.name], list(r.features), r.view.join_keys, r.view.ttl_ns)
        for r in reads
        if not r.view.is_aggregation
    ]
    aggs = tuple(
        AggregateRead(i, store[r.view.name], r.view, r.features)
        for i, r in enumerate(reads)
        if r.view.is_aggregation
    )
    nb = {q.view: null_before[q.view] for q in queries if q.view in null_before}
    ents = None if spec.entities is None else spec.entities.take(pa.array(g.rows[p]))
    full = spec.computed is not None  # the join of an on-demand export: full names
    return TabletJob(p, pin.offset + 1, listings, queries, ents, spec.entities_as_of_ns,
                     nb or None, full_names=full, aggregates=aggs)  # fmt: skip


def _detail(payload: bytes) -> str:
    """A node's error answer as text: its JSON `detail`, else its first 500 bytes."""
    text = payload[:500].decode(errors="replace")
    with contextlib.suppress(orjson.JSONDecodeError):
        body = orjson.loads(payload)
        text = str(body.get("detail", text)) if isinstance(body, dict) else text
    return text
