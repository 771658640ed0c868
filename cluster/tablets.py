"""A node's tablets: one ordinary rickhouse root per partition it serves, opened with small
per-tablet resources, and the routing of read requests to them.

Tablet of partition p: `<node root>/p{p:04d}` (TABLET_DIR), an externally sequenced
FeatureStore (store/external.py) whose `last_seq` is the Kafka offset of the last record it
applied, plus one. A node opens many tablets in one process, so each gets small engine
resources (TabletOptions): one DuckDB thread, one flush thread, a smaller memtable and offline
buffer, instead of the single-node defaults sized for one store per machine.

Reads: each row of a request goes to the tablet of its partition under each routing group
(`group_views`): views routed by their join keys, by their `partition_by` entity's keys, and
replicated views, which every tablet holds and which join whichever group a row goes to.

Thread-safety: `Tablets` is immutable after open; the FeatureStores are thread-safe.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cluster.errors import ClusterError, RoutingError
from cluster.partitioning import key_texts, partitions_of
from offline import OfflineOptions
from online import TreeOptions
from store import FeatureStore, OnlineResponse
from store.placement import REPLICATE_ALL

log = logging.getLogger(__name__)

TABLET_DIR = "p{:04d}"  # tablet directory under a node's root: on-disk layout, do not change
# The routing group of a request that reads replicated views only: any one tablet answers it.
REPLICATED: tuple[str, ...] = ("*",)
# route_by `@<p>` (router -> node): read every row on tablet p. Never a join key (names start
# with a letter).
PINNED = "@"


class NotOwnedError(ClusterError):
    """A read asked for entities of partitions this node does not serve."""


@dataclass(frozen=True)
class TabletOptions:
    # DuckDB threads per tablet: queries of one tablet are small; a node runs many tablets.
    duckdb_threads: int = 1
    duckdb_memory_limit: str = "128MB"  # per tablet; exports spill beyond it
    flush_threads: int = 1  # offline flush encoders per tablet
    memtable_bytes: int = 16 << 20  # online memtable per view per tablet
    buffer_rows: int = 250_000  # offline buffer per view per tablet
    background: bool = True  # engines' background threads; off for deterministic tests

    def tree_options(self) -> TreeOptions:
        return TreeOptions(memtable_bytes=self.memtable_bytes, background=self.background)

    def offline_options(self) -> OfflineOptions:
        return OfflineOptions(
            duckdb_threads=self.duckdb_threads,
            duckdb_memory_limit=self.duckdb_memory_limit,
            flush_threads=self.flush_threads,
            buffer_rows=self.buffer_rows,
            background=self.background,
        )


def tablet_root(node_root: Path, partition: int) -> Path:
    return Path(node_root) / TABLET_DIR.format(partition)


@dataclass(frozen=True)
class TabletRead:
    """One tablet's answer: for the request rows `rows`, routed by join keys `keys`."""

    keys: tuple[str, ...]
    rows: np.ndarray  # int64 row indices into the request, ascending
    response: OnlineResponse
    views: frozenset[str] | None = None  # the views (and on-demand views) it answers; None: all

    def serves(self, view: str) -> bool:
        """Whether this read's columns of `view` (a feature or on-demand view) are its answer."""
        return self.views is None or view in self.views


class Tablets:
    """The open tablets of one node: {partition: FeatureStore}, P the cluster's partition count."""

    def __init__(
        self,
        root: Path,
        partitions: Sequence[int],
        total_partitions: int,
        options: TabletOptions | None = None,
    ) -> None:
        self.total = total_partitions
        o = options or TabletOptions()
        self.stores: dict[int, FeatureStore] = {}
        try:
            for p in partitions:
                self.stores[p] = FeatureStore(
                    tablet_root(root, p),
                    tree_options=o.tree_options(),
                    offline_options=o.offline_options(),
                )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fs in self.stores.values():
            fs.close()

    def any(self) -> FeatureStore:
        """One tablet (the lowest partition): definitions are the same on all, once caught up."""
        return self.stores[min(self.stores)]

    def positions(self) -> dict[int, int]:
        """{partition: applied offset} (-1 before the first record)."""
        return {p: fs.last_seq - 1 for p, fs in self.stores.items()}

    def get_online_features(
        self,
        features: str | Sequence[str],
        entities: Mapping[str, Sequence[Any]],
        full_feature_names: bool = False,
        route_by: Sequence[str] | None = None,
    ) -> list[TabletRead]:
        """Route each entity row to its tablet and read there.

        Rows are routed by each requested view's routing key (its join keys, or its
        `partition_by` entity's; a replicated view is read wherever the row goes). A request
        mixing routing keys is read once per (routing key, partition) group, each read asking
        for all the features: every answer has the request's columns in request order, and
        `TabletRead.serves` names the views whose columns to take from it. Raises
        NotOwnedError naming partitions this node does not serve.

        route_by: route every row by these join keys only (a router that scattered the request
        by them asks so); `(PINNED + str(p),)` reads every row on tablet p. The answer's columns
        of the views routed otherwise are to be ignored.
        """
        defs = self.any().definitions()
        groups = group_views(defs, features)
        if route_by:  # the router's group (its definitions may be a little older than ours)
            key = tuple(route_by)
            groups = {key: groups.get(key, replicated_views(defs, features))}
        n = _rows(entities)
        out = []
        for keys, views in groups.items():
            pinned = pinned_partition(keys)
            if not keys or keys == REPLICATED or pinned is not None:
                store = self.any() if pinned is None else self.stores[self._owned([pinned])[0]]
                res = store.get_online_features(features, entities, full_feature_names)
                every = not keys or pinned is not None  # one read answers every column
                out.append(TabletRead(keys, np.arange(n), res, None if every else views))
                continue
            cols = [pa.array(list(entities[k])) if k in entities else None for k in keys]
            if any(c is None for c in cols):  # the store names the missing key as a root does
                self.any().get_online_features(features, entities, full_feature_names)
                missing = [k for k, c in zip(keys, cols, strict=True) if c is None]
                raise RoutingError(f"entities lack join key(s) {missing}")
            parts = partitions_of(key_texts(cols), self.total) if n else np.zeros(0, np.int32)
            for p in self._owned(np.unique(parts).tolist()):
                rows = np.flatnonzero(parts == p)
                sub = {k: [v[i] for i in rows.tolist()] for k, v in entities.items()}
                res = self.stores[p].get_online_features(features, sub, full_feature_names)
                out.append(TabletRead(keys, rows, res, views))
        return out

    def _owned(self, partitions: list[int]) -> list[int]:
        """`partitions`, all served here; else NotOwnedError naming those that are not."""
        stray = sorted(set(partitions) - set(self.stores))
        if stray:
            raise NotOwnedError(
                f"entities of partition(s) {stray} are not served by this node "
                f"(it serves {sorted(self.stores)}); ask a node that owns them"
            )
        return partitions


def view_routes(defs: Mapping[str, Any]) -> dict[str, tuple[str, ...] | None]:
    """{feature view: its routing key columns, or None for a replicated view}, as
    cluster/partitioning.py `routing_in` says for each (`defs` were validated when parsed).
    The last answer is kept for the same `defs` object (the router's, replaced whole)."""
    cached = _routes_cache
    if cached is not None and cached[0] is defs:
        return cached[1]
    keys = {e["name"]: tuple(e["join_keys"]) for e in defs.get("entities") or []}
    out: dict[str, tuple[str, ...] | None] = {}
    for v in defs.get("feature_views") or []:
        if v.get("replicate") == REPLICATE_ALL:
            out[v["name"]] = None
        elif v.get("partition_by"):
            out[v["name"]] = keys[v["partition_by"]]
        else:
            out[v["name"]] = tuple(k for e in v["entities"] for k in keys[e])
    globals()["_routes_cache"] = (defs, out)
    return out


_routes_cache: tuple[Mapping[str, Any], dict[str, tuple[str, ...] | None]] | None = None


def group_views(
    defs: Mapping[str, Any], features: str | Sequence[str]
) -> dict[tuple[str, ...], frozenset[str]]:
    """{routing key: the views and on-demand views of the request read by it}, in request order.

    A replicated view joins every group; a request of replicated views only is the one group
    REPLICATED. An on-demand view routes as its first source (sources of other routing keys are
    read on that tablet). No known view: the one group `()` (any tablet names what is wrong).
    """
    routes = view_routes(defs)
    on_demand = defs.get("on_demand_views")
    sources = {v["name"]: v.get("sources") or [] for v in on_demand} if on_demand else {}
    groups: dict[tuple[str, ...], list[str]] = {}
    replicated: list[str] = []
    for name in dict.fromkeys(ref.partition(":")[0] for ref in _refs(defs, features)):
        view = name
        if name in sources:  # computed from its sources' rows: routed as its first source
            view = next(iter(sources[name]), name)
        if view not in routes:
            continue  # the store names the unknown view
        keys = routes[view]
        named = replicated if keys is None else groups.setdefault(keys, [])
        named += (name, view) if view != name else (name,)
    if not groups:
        return {REPLICATED: frozenset(replicated)} if replicated else {(): frozenset()}
    return {k: frozenset(v + replicated) for k, v in groups.items()}


def replicated_views(defs: Mapping[str, Any], features: str | Sequence[str]) -> frozenset[str]:
    """The replicated views a request reads (they join whichever group the row goes to)."""
    routes = view_routes(defs)
    return frozenset(r.split(":", 1)[0] for r in _refs(defs, features)
                     if routes.get(r.split(":", 1)[0], ()) is None)  # fmt: skip


def routing_groups(defs: Mapping[str, Any], features: str | Sequence[str]) -> list[tuple[str, ...]]:
    """The distinct routing keys of the views a request reads (group_views' keys)."""
    return list(group_views(defs, features))


def pinned_partition(keys: Sequence[str]) -> int | None:
    """p for a route_by of `(PINNED + str(p),)`, else None."""
    if len(keys) == 1 and keys[0].startswith(PINNED) and keys[0][len(PINNED) :].isdigit():
        return int(keys[0][len(PINNED) :])
    return None


def _refs(defs: Mapping[str, Any], features: str | Sequence[str]) -> Sequence[str]:
    if isinstance(features, str):
        for service in defs.get("feature_services") or []:
            if service["name"] == features:
                return service["features"]
        return []
    return features


def view_keys(defs: Mapping[str, Any], view: str) -> tuple[str, ...]:
    """The join keys (routing keys) of `view` in the definitions dict `defs`."""
    entities = {e["name"]: e for e in defs.get("entities", [])}
    for v in defs.get("feature_views", []):
        if v["name"] == view:
            return tuple(k for e in v["entities"] for k in entities[e]["join_keys"])
    return ()


def _rows(entities: Mapping[str, Sequence[Any]]) -> int:
    return len(next(iter(entities.values()))) if entities else 0
