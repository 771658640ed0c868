"""A node's tablets: one ordinary rickhouse root per partition it serves, opened with small
per-tablet resources, and the routing of read requests to them.

Tablet of partition p: `<node root>/p{p:04d}` (TABLET_DIR), an externally sequenced
FeatureStore (store/external.py) whose `last_seq` is the Kafka offset of the last record it
applied, plus one. A node opens many tablets in one process, so each gets small engine
resources (TabletOptions): one DuckDB thread, one flush thread, a smaller memtable and offline
buffer, instead of the single-node defaults sized for one store per machine.

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

log = logging.getLogger(__name__)

TABLET_DIR = "p{:04d}"  # tablet directory under a node's root: on-disk layout, do not change


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

        Rows are routed by each requested view's join keys. A request mixing views of
        different join keys is read once per (join keys, partition) group, each read asking
        for all the features: every answer has the request's columns in request order, and the
        columns of views routed by the group's keys are the ones to take from it. Raises
        NotOwnedError naming partitions this node does not serve.

        route_by: route every row by these join keys only (a router that scattered the request
        by them asks so); the answer's columns of the views routed otherwise are to be ignored.
        """
        defs = self.any().definitions()
        groups = [tuple(route_by)] if route_by else routing_groups(defs, features)
        n = _rows(entities)
        out = []
        for keys in groups:
            if not keys:  # no known view: any tablet names what is wrong
                res = self.any().get_online_features(features, entities, full_feature_names)
                out.append(TabletRead(keys, np.arange(n), res))
                continue
            cols = [pa.array(list(entities[k])) if k in entities else None for k in keys]
            if any(c is None for c in cols):
                missing = [k for k, c in zip(keys, cols, strict=True) if c is None]
                raise RoutingError(f"entities lack join key(s) {missing}")
            parts = partitions_of(key_texts(cols), self.total) if n else np.zeros(0, np.int32)
            stray = sorted(set(np.unique(parts).tolist()) - set(self.stores))
            if stray:
                raise NotOwnedError(
                    f"entities of partition(s) {stray} are not served by this node "
                    f"(it serves {sorted(self.stores)}); ask a node that owns them"
                )
            for p in np.unique(parts).tolist():
                rows = np.flatnonzero(parts == p)
                sub = {k: [v[i] for i in rows.tolist()] for k, v in entities.items()}
                res = self.stores[p].get_online_features(features, sub, full_feature_names)
                out.append(TabletRead(keys, rows, res))
        return out


def routing_groups(defs: Mapping[str, Any], features: str | Sequence[str]) -> list[tuple[str, ...]]:
    """The distinct routing keys (join key tuples) of the views a request reads. An on-demand
    view routes as its first source (sources of other join keys are read on that tablet)."""
    views = {v["name"]: v for v in defs.get("feature_views", [])}
    entities = {e["name"]: e for e in defs.get("entities", [])}
    if isinstance(features, str):
        services = {s["name"]: s for s in defs.get("feature_services", [])}
        refs = services[features]["features"] if features in services else []
    else:
        refs = list(features)
    on_demand = {v["name"]: v for v in defs.get("on_demand_views", [])}
    out: list[tuple[str, ...]] = []
    for ref in refs:
        name = ref.split(":", 1)[0]
        if name in on_demand:  # computed from its sources' rows: routed as its first source
            name = next(iter(on_demand[name].get("sources") or []), name)
        view = views.get(name)
        if view is None:
            continue  # the store names the unknown view
        keys = tuple(k for e in view["entities"] for k in entities[e]["join_keys"])
        if keys not in out:
            out.append(keys)
    return out or [()]


def view_keys(defs: Mapping[str, Any], view: str) -> tuple[str, ...]:
    """The join keys (routing keys) of `view` in the definitions dict `defs`."""
    entities = {e["name"]: e for e in defs.get("entities", [])}
    for v in defs.get("feature_views", []):
        if v["name"] == view:
            return tuple(k for e in v["entities"] for k in entities[e]["join_keys"])
    return ()


def _rows(entities: Mapping[str, Sequence[Any]]) -> int:
    return len(next(iter(entities.values()))) if entities else 0
