"""Recovery on open, and the commit log's trimming: what makes both stores agree with the log.

On open, `recover` replays every commit-log record above each store's own durable_seq (the
online tree's and the offline view's separately; records of dropped views and of views reset by
a forced apply are skipped), after `CommitLog.recover` has cut a torn tail. Afterwards both
stores hold every acknowledged batch. `release_segments` deletes log segments once every record
in them is durable in both stores.

Thread-safety: `recover` runs in the constructor, before the store is shared. `release_segments`
must be called under the write path's sequencing lock (CommitLog.release requires it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from offline import OfflineStore
from store.batch import CREATED_TS
from store.commitlog import CommitLog
from store.definitions import FeatureView
from store.dtypes import arrow_type
from store.registry import Registry
from store.snapshot import Snapshot

log = logging.getLogger(__name__)

# apply(view, seq, payload, to_online, to_offline): write_path.apply_logged bound to the store
Apply = Callable[[FeatureView, int, pa.Table, bool, bool], None]
# apply_delete(seq, payload, online views, offline views): a delete record (store/deletes.py)
ApplyDelete = Callable[[int, pa.Table, set[str], set[str]], object]
DELETE_PREFIX = "\x00delete"  # store/deletes.py DELETE_RECORD


@dataclass(frozen=True)
class Recovered:
    """Where the store stands after recovery."""

    applied_seq: int  # highest seq both stores hold (or the log's last seq, if higher)
    last_created: int  # highest created_timestamp replayed (ns): ingest stamps never go below it


def recover(
    commit_log: CommitLog,
    registry: Registry,
    snap: Snapshot,
    off: OfflineStore,
    apply: Apply,
    apply_delete: ApplyDelete | None = None,
) -> Recovered:
    """Replay the commit log above each store's durable_seq; cut a torn tail; trim the log."""
    defs, trees, storage = snap.defs, snap.trees, snap.storage
    online_from = {v: t.last_seq for v, t in trees.items()}
    offline_from = {v: off.durable_seq(storage[v]) for v in trees}
    replayed = 0
    last_created = 0
    for rec in commit_log.recover():
        if rec.view.startswith(DELETE_PREFIX):
            if apply_delete is not None:
                views = [v for v in rec.view.split("\x00")[2:] if v in defs.feature_views]
                views = [v for v in views if rec.seq > registry.reset_seq.get(v, 0)]
                on = {v for v in views if rec.seq > online_from[v]}
                of = {v for v in views if rec.seq > offline_from[v]}
                apply_delete(rec.seq, rec.table(), on, of)
                replayed += 1
            continue
        view = defs.feature_views.get(rec.view)
        if view is None or rec.seq <= registry.reset_seq.get(rec.view, 0):
            continue
        to_online = rec.seq > online_from[rec.view]
        to_offline = rec.seq > offline_from[rec.view]
        if not (to_online or to_offline):
            continue
        table = conform(view, rec.table())
        created = table.column(CREATED_TS).combine_chunks().cast(pa.int64()).to_numpy()
        if len(created):
            last_created = max(last_created, int(created.max()))
        apply(view, rec.seq, table, to_online, to_offline)
        replayed += 1
    stores_seq = max([t.last_seq for t in trees.values()] + [off.max_seq(), 0])
    applied_seq = max(commit_log.last_seq, stores_seq)
    if replayed:
        log.info("recovered %d commit-log record(s) up to seq %d", replayed, applied_seq)
    release_segments(commit_log, registry, snap, off)
    return Recovered(applied_seq, last_created)


def release_segments(
    commit_log: CommitLog, registry: Registry, snap: Snapshot, off: OfflineStore
) -> None:
    """Delete the log segments whose every record is durable in both stores (or obsolete)."""
    defs, trees, storage = snap.defs, snap.trees, snap.storage
    reset = registry.reset_seq

    def durable(view: str, seq: int) -> bool:
        if view.startswith(DELETE_PREFIX):  # a delete: durable once every view it touched is
            return all(durable(v, seq) for v in view.split("\x00")[2:])
        if view not in defs.feature_views or seq <= reset.get(view, 0):
            return True
        return trees[view].durable_seq >= seq and off.durable_seq(storage[view]) >= seq

    commit_log.release(durable)


def conform(view: FeatureView, table: pa.Table) -> pa.Table:
    """A logged batch of an older schema of `view`: add its later features as null columns."""
    for f in view.features:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, arrow_type(f.dtype)))
    return table
