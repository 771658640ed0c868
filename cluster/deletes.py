"""Deletes through the cluster: the router's delete records, the node's apply, their answers.

A delete (`DELETE /v1/entities/{view}`) or a forget (`POST /v1/forget/{entity}`) sent to the
router is validated with the applied definitions (the same errors as a single root:
store/deletes.py `entity_table`), stamped with the router's clock (the delete's time, so every
replica builds the same record) and written as records of kind `delete` to the partitions
holding the entities, in one batch: one Kafka transaction and one commit record, exactly like
an ingested batch (cluster/writer.py, cluster/staging.py). A node applies a partition's delete
records at the seq after the batch's last record there with `FeatureStore.delete_at`
(store/delete_at.py): tombstones online, offline files rewritten, the sticky table updated.

Where a delete goes, per view:
- a view routed by the given keys (the view's own join keys for a delete; for a forget, a view
  of that entity alone, or one with `partition_by` that entity): the partition of each key;
- any other view (replicated with `replicate: all`, or a composite view routed by its full
  key, which a forget names only in part): every partition, each tablet deleting what it holds.

Record value (JSON, wire format): `{"time": <ns>, "targets": {view: {join key: [values]}}}`; a
view naming only some of its join keys deletes every entity of the view with those key parts.
A partition may get several records of one batch (a large delete is cut to the record limit);
the node merges them into one delete at one seq.

The answer: `deleted` is counted by the nodes that applied the delete (`DeleteResults`, kept in
memory per node and asked with `GET /v1/deletes`); a replicated view counts once. When no
replica of a partition applied the delete within the wait, the answer says so in
`not_yet_applied` (the delete is durable in the log and will be applied).

Pure functions but `DeleteResults` (a lock guards its map) and `gather_results` (async, on the
router's event loop).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import orjson
import pyarrow as pa

from cluster.partitioning import Routing, routing_of
from cluster.record import Slice
from store import Definitions
from store.definitions import FeatureView
from store.deletes import entity_table
from store.errors import UnknownViewError, ValidationError
from store.forget import entity_keys, narrow_view

DELETE = "delete"  # the record kind (header `kind`): wire format, do not change
RESULTS_KEPT = 4096  # applied deletes whose counts a node remembers, per node


# ---------------------------------------------------------------------------------- router


def _routing(defs: Definitions, fv: FeatureView) -> Routing:
    """How `fv`'s rows are partitioned (its join keys, `partition_by`, or `replicate: all`)."""
    return routing_of(fv, defs.entities)


def delete_targets(
    defs: Definitions, view: str, entities: Mapping[str, Sequence[Any]]
) -> dict[str, pa.Table]:
    """{view: the distinct entities to delete}; the single root's errors for bad input."""
    fv = defs.feature_views.get(view)
    if fv is None:
        raise UnknownViewError(view)
    return {view: entity_table(fv, entities)}


def forget_targets(defs: Definitions, entity: str, values: Sequence[Any]) -> dict[str, pa.Table]:
    """{view: the entity's key values as typed by the view} for every view keyed by `entity`
    (composite keys included: those tables hold the entity's join keys only); the keys are
    checked as a single root checks them (store/forget.py `entity_keys`)."""
    jks, cols, views = entity_keys(defs, entity, values)
    return {fv.name: entity_table(narrow_view(fv, jks), cols) for fv in views}


def delete_slices(
    defs: Definitions,
    targets: Mapping[str, pa.Table],
    partitions: int,
    time_ns: int,
    max_bytes: int,
) -> list[Slice]:
    """The delete records of `targets` per partition (see the module docstring)."""
    per_part: dict[int, dict[str, pa.Table]] = {}
    for view, table in targets.items():
        routing = _routing(defs, defs.feature_views[view])
        routed = not routing.replicate and set(routing.columns) <= set(table.column_names)
        if routed:
            split = routing.split(table, partitions)
        else:
            split = dict.fromkeys(range(partitions), table)
        for p, t in split.items():
            per_part.setdefault(p, {})[view] = t
    out: list[Slice] = []
    for p, views in sorted(per_part.items()):
        first = next(iter(views))
        for value in _encode(views, time_ns, max_bytes):
            out.append(Slice(p, first, "delete", value))
    return out


def replicated_views(defs: Definitions, views: Sequence[str]) -> set[str]:
    """Those of `views` whose every partition holds all their rows (counted once)."""
    fvs = defs.feature_views
    return {v for v in views if v in fvs and _routing(defs, fvs[v]).replicate}


def _encode(views: Mapping[str, pa.Table], time_ns: int, max_bytes: int) -> list[bytes]:
    """The record values of one partition's targets, each within max_bytes (cut by rows)."""
    value = orjson.dumps({"time": time_ns, "targets": {v: t.to_pydict() for v, t in views.items()}})
    if len(value) <= max_bytes:
        return [value]
    if len(views) > 1:  # one record per view first, then rows
        items = list(views.items())
        half = len(items) // 2
        return _encode(dict(items[:half]), time_ns, max_bytes) + _encode(
            dict(items[half:]), time_ns, max_bytes
        )
    ((view, table),) = views.items()
    if table.num_rows <= 1:
        raise ValidationError(f"view {view!r}: one key of the delete exceeds the record limit")
    half = table.num_rows // 2
    return _encode({view: table.slice(0, half)}, time_ns, max_bytes) + _encode(
        {view: table.slice(half)}, time_ns, max_bytes
    )


def answer(
    kind: str,
    positions: Mapping[int, int],
    results: Mapping[int, Mapping[str, int] | None],
    replicated: set[str],
    views: Sequence[str],
) -> dict[str, Any]:
    """The router's answer: the single root's {"seq", "deleted"} (+ "views" for a forget),
    "seq" and "position" per partition, and the partitions not applied yet, if any."""
    per_view = dict.fromkeys(views, 0)
    counted_once: set[str] = set()
    for p in sorted(results):
        got = results[p]
        for v, n in (got or {}).items():
            if v in replicated:
                if v in counted_once:
                    continue
                counted_once.add(v)
            per_view[v] = per_view.get(v, 0) + int(n)
    out: dict[str, Any] = {
        "seq": {str(p): off + 1 for p, off in sorted(positions.items())},
        "deleted": sum(per_view.values()),
    }
    if kind == "forget":
        out["views"] = per_view
    out["position"] = {str(p): off for p, off in sorted(positions.items())}
    missing = sorted(p for p in positions if results.get(p) is None)
    if missing:
        out["not_yet_applied"] = missing
    return out


async def gather_results(
    nodes: Sequence[tuple[str, Sequence[int]]], positions: Mapping[int, int], wait_s: float
) -> dict[int, dict[str, int] | None]:
    """Ask nodes (url, partitions) for the counts of the delete ending at `positions`, waiting
    up to wait_s for them to apply it, until one replica of each partition answered;
    {partition: {view: n}, or None if no replica answered it (not applied within wait_s, or
    applied before that node's last restart)}."""
    out: dict[int, dict[str, int] | None] = dict.fromkeys(positions)
    timeout = aiohttp.ClientTimeout(total=wait_s + 5.0)

    async def ask(session: aiohttp.ClientSession, url: str, ps: list[int]) -> None:
        want = {str(p): positions[p] for p in ps}
        params = {"positions": orjson.dumps(want).decode(), "wait_ms": str(int(wait_s * 1000))}
        try:
            async with session.get(f"{url}/v1/deletes", params=params) as r:
                if r.status != 200:
                    return
                body = orjson.loads(await r.read())
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return
        for p, got in body.get("results", {}).items():
            if got is not None and out.get(int(p)) is None:
                out[int(p)] = got

    async with aiohttp.ClientSession(timeout=timeout) as session:
        pending = set()
        for url, owned in nodes:
            ps = [p for p in owned if p in positions]
            if ps:
                pending.add(asyncio.ensure_future(ask(session, url, ps)))
        # done once one replica of every partition answered: a lagging replica is not waited for
        while pending and any(v is None for v in out.values()):
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return out


# ---------------------------------------------------------------------------------- node


def decode_records(values: Sequence[bytes]) -> tuple[dict[str, dict[str, list[Any]]], int]:
    """The merged targets {view: {join key: [values]}} and the time of a partition's delete
    records (one batch); ValidationError for a malformed record (every replica refuses it)."""
    merged: dict[str, dict[str, list[Any]]] = {}
    time_ns: int | None = None
    for value in values:
        try:
            obj = orjson.loads(value)
            t = obj["time"]
            targets = obj["targets"]
            assert isinstance(t, int) and isinstance(targets, dict)
        except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            raise ValidationError("a delete record is not {time, targets} JSON") from None
        time_ns = t if time_ns is None else time_ns
        for view, cols in targets.items():
            into = merged.setdefault(view, {})
            if not isinstance(cols, dict):
                raise ValidationError(f"view {view!r}: delete targets must map join keys to values")
            for k, vals in cols.items():
                into.setdefault(k, []).extend(vals)
    if time_ns is None:
        raise ValidationError("a delete batch holds no record")
    return merged, time_ns


class DeleteResults:
    """What the last RESULTS_KEPT deletes applied by this node deleted: (partition, offset of
    the batch's last record) -> {view: n}. Thread-safe (`_lock`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._map: OrderedDict[tuple[int, int], dict[str, int]] = OrderedDict()  # GUARDED_BY(_lock)

    def put(self, partition: int, offset: int, result: Mapping[str, int]) -> None:
        with self._lock:
            self._map[(partition, offset)] = dict(result)
            while len(self._map) > RESULTS_KEPT:
                self._map.popitem(last=False)

    def get(self, partition: int, offset: int) -> dict[str, int] | None:
        with self._lock:
            return self._map.get((partition, offset))


def apply_delete_records(fs: Any, seq: int, records: Sequence[Any]) -> dict[str, int] | None:
    """Apply one partition's delete records of a batch (LogRecords) to tablet `fs` at `seq`:
    {view: entities deleted}, or None when the tablet was already past `seq`."""
    targets, time_ns = decode_records([r.value for r in records])
    return fs.delete_at(seq, targets, time_ns)
