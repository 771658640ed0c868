"""Retention as the store applies it: the offline store told each view's retention, the cutoffs
of a point-in-time read, and the audit's floor.

A view with `retention: R` keeps offline history at or after `now - R` (event time); the offline
store drops older partitions (offline/retention.py). A point-in-time read treats an entity row
before a view's cutoff as *outside retention*: its features of that view read null, whatever
the store still holds (so the answer does not depend on when the drop ran), and the rows are
counted per view in the answer (`outside_retention`). Online rows are not affected: the ttl
governs them, so the audit compares only rows at or after the offline store's retained floor.
Pure functions over a snapshot and the offline store; safe from any thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from offline import OfflineStore
from store.batch import EVENT_TS
from store.features import FeaturePlan
from store.snapshot import Snapshot

OUTSIDE_METADATA = b"rickhouse.outside_retention"  # schema metadata: JSON {view: rows}


def apply_retention(off: OfflineStore, snap: Snapshot) -> None:
    """Tell the offline store each view's retention (0: keep everything), by storage name."""
    for name, view in snap.defs.feature_views.items():
        off.set_retention(snap.storage[name], view.retention_ns)


def read_cutoffs(plan: FeaturePlan, snap: Snapshot, now_ns: int | None = None) -> dict[str, int]:
    """{view: cutoff ns} of the views of `plan` that have a retention (`now - retention`)."""
    now = time.time_ns() if now_ns is None else now_ns
    return {r.view.name: now - r.view.retention_ns for r in plan.reads if r.view.retention_ns}


def outside_retention(
    off: OfflineStore, snap: Snapshot, entities: pa.Table | str, cutoffs: Mapping[str, int]
) -> tuple[dict[str, int], dict[str, int]]:
    """(rows outside retention per view, `null_before` for the offline read by storage name):
    entity rows before a view's cutoff; only views with such rows need nulls applied."""
    if not cutoffs or (isinstance(entities, str) and not _timestamped(entities)):
        return {}, {}  # no cutoff, or an input the offline read refuses with a clear error
    by_storage = {snap.storage[v]: c for v, c in cutoffs.items()}
    counts = off.count_before(entities, by_storage)
    outside = {v: counts[snap.storage[v]] for v in cutoffs}
    null_before = {snap.storage[v]: c for v, c in cutoffs.items() if outside[v]}
    return outside, null_before


def _timestamped(path: str) -> bool:
    """The Parquet file at `path` has a timestamp `event_timestamp` (its footer only)."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return False
    i = schema.get_field_index(EVENT_TS)
    return i >= 0 and pa.types.is_timestamp(schema.field(i).type)


def with_outside(table: pa.Table, outside: Mapping[str, int]) -> pa.Table:
    """`table` with its schema metadata naming the rows outside retention (OUTSIDE_METADATA),
    when any view read has a retention."""
    if not outside:
        return table
    meta = dict(table.schema.metadata or {})
    meta[OUTSIDE_METADATA] = json.dumps(dict(outside), sort_keys=True).encode()
    return table.replace_schema_metadata(meta)


def audit_floor(off: OfflineStore, storage: str) -> int | None:
    """Event time (ns) below which the audit ignores a view's rows on both sides: offline
    history there is (being) dropped by retention, online rows stay until their ttl."""
    return off.retained_floor_ns(storage)
