"""Administration of a FeatureStore: `audit` (offline vs online at one quiescent point), `flush`,
`compact` (with retention drops and the purge of deleted entities), `stats` and `close`; the
facade's methods of the same names delegate here.

Invariants: `audit` and `close` hold ingests out (the store's `_admin`, then the write path's
sequencing lock) for their duration; `flush` waits only for batches already logged, then flushes
while ingests continue; `compact` never holds ingests. Thread-safety: callable from any thread;
each operation takes the store's `_admin` lock, except `stats` (statistics only, no lock).
`_purged_seq` is GUARDED_BY the store's `_admin` (see store/feature_store.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from store import forget as forgetting
from store.aggregations.audit import audit_aggregates
from store.audit import audit_view
from store.retention import audit_floor
from store.snapshot import close_engines

if TYPE_CHECKING:
    from store.feature_store import FeatureStore

__all__ = ["audit", "close", "compact", "flush", "stats"]

# The facade's logger: operators filter on its name wherever the code lives.
log = logging.getLogger("store.feature_store")


def audit(fs: FeatureStore) -> dict[str, dict[str, Any]]:
    """Per view: offline latest row per entity vs the online scan; mismatches must be 0.

    Holds ingests for its duration: it compares the stores at one quiescent point."""
    with fs._admin, fs._writes.lock:
        fs._writes.quiesce()
        out = {}
        for name, view in fs._snap.defs.feature_views.items():
            tree = fs._snap.trees[name]
            storage = fs._snap.storage[name]
            floor = audit_floor(fs._off, storage)
            floor = forgetting.ttl_floor(view, fs._snap.trees[name], floor)
            out[name] = audit_view(view, fs._off, storage, tree, floor)
            if view.aggregations:  # online aggregates vs the offline events' at one T
                agg = audit_aggregates(view, fs._off, storage, tree, fs._keys.hash_bits)  # type: ignore[arg-type]
                out[name]["mismatches"] += agg["aggregate_mismatches"]
                out[name]["examples"] = out[name]["examples"] + agg.pop("examples")
                out[name].update(agg)
            if fs._deleted.count(name):  # rows of deleted entities left: must be 0
                gone = forgetting.audit_deleted(
                    view, fs._off, storage, fs._snap, fs._deleted, fs._keys.hash_bits
                )
                out[name]["deleted_entity_rows"] = gone
                out[name]["mismatches"] += gone
            if out[name]["mismatches"]:
                log.error(
                    "audit of %s: %d mismatch(es): %s",
                    name,
                    out[name]["mismatches"],
                    out[name]["examples"],
                )
        return out


def flush(fs: FeatureStore) -> None:
    """Make both stores durable up to the last seq (as of the call) and trim the commit log.

    Ingests continue meanwhile; only the wait for batches already logged holds them."""
    with fs._admin:
        with fs._writes.lock:
            fs._writes.quiesce()
        for tree in fs._snap.trees.values():
            tree.flush()
        fs._off.flush()
        fs._writes.trim_log()
        fs._fresh.save()


def compact(fs: FeatureStore) -> None:
    """Run every pending compaction of both stores now; ingests and reads continue."""
    with fs._admin:
        fs._writes.check_open()
        for tree in fs._snap.trees.values():
            tree.compact()
        fs._off.drop_expired()  # retention: partitions entirely before now - retention
        fs._off.compact()
        fs._writes.trim_log()
        if fs._deleted.applied_seq > fs._purged_seq:  # deletes leave the disk for good
            purged = fs._deleted.applied_seq
            forgetting.purge(fs._writes, fs._off, fs._snap, fs._log.rotate)
            fs._purged_seq = purged


def stats(fs: FeatureStore) -> dict[str, Any]:
    off_stats = fs._off.stats()
    off_rows = fs._off.rows()
    snap = fs._snap
    return {
        "last_seq": fs._writes.applied_seq,
        "commit_log": fs._log.stats(),
        "online": {v: t.stats() for v, t in snap.trees.items()},
        "offline": {v: off_stats.get(name, {}) for v, name in snap.storage.items()},
        "freshness": fs._fresh.stats(
            snap.defs,
            {v: t.stats() for v, t in snap.trees.items()},
            {v: off_stats.get(name, {}) for v, name in snap.storage.items()},
            {v: off_rows.get(name, 0) for v, name in snap.storage.items()},
        ),
        "counters": {
            "ingested_rows": fs._writes.ingested_rows,
            "ingest_batches": fs._writes.ingest_batches,
            **fs._counters,
        },
        "deletes": fs._deleted.stats(),
    }


def close(fs: FeatureStore) -> None:
    """Flush both stores, trim the log, release the writer lock. Idempotent."""
    with fs._admin, fs._writes.lock:
        if not fs._writes.stop():
            return
        try:
            fs._fresh.save()
            close_engines(fs._snap, fs._off)
            if not fs._writes.failed:
                fs._writes.release_segments()
            fs._log.close()
        finally:
            fs._writer_lock.release()
