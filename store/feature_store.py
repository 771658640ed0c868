"""FeatureStore: the facade users program against. Read this file first; each method hands its
work to the module that owns it.

- opening: the registry (store/registry.py), the engines of every view and the snapshot reads
  see (store/snapshot.py), then recovery from the commit log (store/recovery.py);
- `apply`: plan the change (store/registry.py), carry it out (store/evolution.py);
- `ingest` / `push`: validate (store/batch.py `convert_batch`), then the write path
  (store/write_path.py: sequence, log, group fsync, apply in seq order; keys by
  store/key_resolution.py);
- `ingest_at` / `apply_at` / `skip_at`: externally sequenced writes (store/external.py);
- `delete` / `forget`: store/forget.py (the record and its apply: store/deletes.py; the sticky
  table of deleted entities: store/deleted_keys.py);
- reads: online (store/online_read.py), historical (store/training.py), `export_training`
  (store/training_export.py), `offline_files` (store/published.py);
- `audit`, `flush`, `compact`, `stats`, `close`: store/admin.py (per-view audit: store/audit.py);
  `stale_views`: store/freshness.py.
Every public method is wrapped by store/boundary.py `engine_errors`: no online.*Error or
offline.*Error reaches a caller, only the store's own errors (store/errors.py).

Threading model: every public method may be called from any thread. Reads take no store lock:
they read the current Snapshot (immutable; `apply` swaps it whole) and the engines' read paths
never wait for writes or compaction; only a read that meets a tree `apply` or `close` is closing
waits for that to finish, then reads again. Ingests overlap: each holds the sequencing lock only
to sequence and append to the log. `apply`, `audit` and `close` wait until every acknowledged
ingest has been applied and hold ingests out while they run; `flush` waits for that too, then
flushes while ingests continue; `compact` never holds ingests.

Lock order: `_admin` (serializes apply, audit, flush, compact and close) -> `WritePath.lock`
(sequencing) -> `WritePath._applied` (apply in seq order) -> `KeyResolver._lock` (claims).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from offline import OfflineOptions
from online import ClosedError as OnlineClosedError
from online import LSMTree, TreeOptions
from store import admin, external, training_export
from store import forget as forgetting
from store.aggregations.rebuild import rebuild_states
from store.batch import convert_batch
from store.boundary import engine_errors
from store.commitlog import CommitLog
from store.definitions import Definitions, FeatureView
from store.deletes import DeletedKeys, apply_delete
from store.errors import ClosedError, UnknownPushSourceError
from store.evolution import evolve
from store.external import Sequencing
from store.freshness import Freshness
from store.key_resolution import KeyResolver
from store.lock import WriterLock
from store.on_demand_export import historical_on_demand
from store.online_read import read_online
from store.online_response import OnlineResponse
from store.published import offline_files
from store.recovery import recover
from store.registry import Registry, plan_apply
from store.retention import apply_retention
from store.snapshot import Snapshot, close_engines, open_engines, open_tree, resolve_tree_options
from store.training import historical_features
from store.write_path import WritePath, apply_logged

log = logging.getLogger(__name__)


class FeatureStore:
    """A feature store rooted at a directory: opens or creates it and recovers on open.

    root: the directory (`registry.json`, `LOCK`, `commitlog/`, `online/<view>/`, `offline/`).
    online_index, delta: index mode ("auto", "block" or "learned") and PLR error bound of the
        online trees; default: tree_options' values ("auto" and 8 without tree_options).
    tree_options / offline_options: full engine options. An online_index or delta that
        contradicts tree_options raises ValidationError.
    segment_bytes: commit-log segment size before rotation.
    Opening a store with a damaged file raises CorruptionError naming the file.
    """

    @engine_errors
    def __init__(
        self,
        root: str | Path,
        online_index: str | None = None,
        delta: int | None = None,
        *,
        tree_options: TreeOptions | None = None,
        offline_options: OfflineOptions | None = None,
        segment_bytes: int = 64 << 20,
    ) -> None:
        self._root = Path(root)
        self._root.mkdir(parents=True, exist_ok=True)
        self._tree_options = resolve_tree_options(online_index, delta, tree_options)
        self._admin = threading.RLock()  # outermost: apply, audit, flush, compact, close
        self._keys = KeyResolver()
        # Approximate under concurrent reads (no lock on the read path): statistics only.
        self._counters = {"online_lookups": 0, "exports": 0}
        self._writer_lock = WriterLock(self._root)
        try:
            self._registry = Registry(self._root)
            # GUARDED_BY(_writes.lock) for swaps (apply); read without a lock (one reference)
            self._snap, self._off = open_engines(
                self._root, self._registry, self._open_tree, offline_options or OfflineOptions()
            )
            try:
                self._log = CommitLog(self._root / "commitlog", segment_bytes)
                replay = functools.partial(apply_logged, self._snap, self._off)
                self._deleted = DeletedKeys(self._root)  # sticky deletes (store/deletes.py)
                replay_delete = functools.partial(
                    apply_delete, self._snap, self._off, self._deleted
                )
                recovered = recover(
                    self._log, self._registry, self._snap, self._off, replay, replay_delete
                )
                # aggregation views: online event states from the recovered offline store
                rebuild_states(
                    self._snap.trees, self._snap.storage, self._off, self._keys.hash_bits
                )
            except BaseException:
                close_engines(self._snap, self._off)
                raise
        except BaseException:
            self._writer_lock.release()
            raise
        self._writes = WritePath(
            self._root, self._log, self._registry, self._off, self._keys, self._current, recovered
        )
        self._writes.deleted = self._deleted  # drops late events of deleted entities
        self._purged_seq = 0  # GUARDED_BY(_admin): deletes up to it are purged from disk
        # own ingests or an external log's seqs (store/external.py); set once, by one applier
        self._sequencing = Sequencing(self._root)
        # freshness of each view (store/freshness.py), fed by every acknowledged batch
        self._fresh = Freshness(self._root)
        self._fresh.track(self._snap.defs)
        self._writes.observers.append(self._fresh.observe)
        apply_retention(self._off, self._snap)  # offline history older than retention goes

    def _current(self) -> Snapshot:
        return self._snap

    def _open_tree(self, view: FeatureView) -> LSMTree:
        options = forgetting.tree_options(view, self._tree_options)  # purges rows past ttl
        return open_tree(self._root, self._registry, view, options)

    # ----------------------------------------------------------------------------- properties

    @property
    def root(self) -> Path:
        return self._root

    @property
    def last_seq(self) -> int:
        """The highest acknowledged (applied) seq."""
        return self._writes.applied_seq

    @engine_errors
    def definitions(self) -> dict[str, Any]:
        """The applied definitions, in the YAML shape."""
        return self._snap.defs.to_dict()

    @engine_errors
    def feature_view(self, name: str) -> dict[str, Any]:
        return self._snap.view(name).to_dict()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- writes

    @engine_errors
    def apply(
        self, definitions: str | Path | Mapping[str, Any], force: bool = False
    ) -> dict[str, Any]:
        """Apply definitions (a YAML path or a dict); return what changed.

        Identical definitions change nothing; added features, views, services and push sources
        are allowed. A type or key change, or dropping a feature or view that holds data, raises
        DefinitionError unless `force=True`, which deletes that view's data.
        """
        new = Definitions.load(definitions)
        with self._admin, self._writes.lock:
            self._writes.quiesce()
            snap = self._snap
            plan = plan_apply(snap.defs, new, lambda v: snap.trees[v].last_seq > 0, force)
            if not plan.changed and not plan.reset_views:
                return plan.changes
            for name in plan.reset_views:
                self._keys.forget(name)
                self._deleted.forget_view(name)
            seq = self._writes.applied_seq
            self._snap = evolve(
                self._root, self._registry, self._off, snap, plan, seq, self._open_tree
            )
            rebuild_states(self._snap.trees, self._snap.storage, self._off, self._keys.hash_bits)
            for name in plan.reset_views:
                self._fresh.forget(name)
            self._fresh.track(self._snap.defs)
            apply_retention(self._off, self._snap)
            return plan.changes

    @engine_errors
    def ingest(self, view: str, data: Any) -> int:
        """Validate, log durably, apply to both stores; return the batch's seq.

        data: pyarrow Table/RecordBatch, pandas DataFrame or dict of columns. A bad batch raises
        ValidationError (naming view, column, row) and nothing of it is written.
        """
        self._writes.check_open()
        self._sequencing.check_internal()
        fv = self._snap.view(view)
        table, missing_created = convert_batch(fv, data)
        return self._writes.write(fv, table, missing_created)

    # ----------------------------------------------------------------------------- external seqs

    @engine_errors
    def ingest_at(self, seq: int, view: str, data: Any) -> bool:
        """Apply a batch at the external position `seq` (a cluster tablet: Kafka offset + 1):
        idempotent and gap-tolerant, False (nothing written) at or below `last_seq`; every row
        carries created_timestamp; a bad batch raises ValidationError. See store/external.py."""
        return external.ingest_at(self, seq, view, data)

    @engine_errors
    def apply_at(
        self, seq: int, definitions: str | Path | Mapping[str, Any], force: bool = False
    ) -> dict[str, Any] | None:
        """Apply definitions at the external position `seq`; None (nothing done) when `seq` is
        at or below `last_seq`, else what changed, as `apply` returns it. A refused change
        raises DefinitionError with the position unchanged (see skip_at; store/external.py)."""
        return external.apply_at(self, seq, definitions, force)

    @engine_errors
    def skip_at(self, seq: int, reason: str) -> bool:
        """Move the external position to `seq` without applying anything: for a record every
        replica refuses alike (a batch that fails validation, a refused definitions change).
        False when `seq` is at or below `last_seq`. `reason` is kept in the commit log."""
        return external.skip_at(self, seq, reason)

    @engine_errors
    def delete_at(
        self, seq: int, targets: Mapping[str, Mapping[str, Any]], time_ns: int
    ) -> dict[str, int] | None:
        """Delete `targets` ({view: {join key: [values]}}) at the external position `seq`, at the
        log writer's time `time_ns`: {view: entities deleted}, None at or below `last_seq`."""
        return external.delete_at(self, seq, targets, time_ns)

    @engine_errors
    def delete(self, view: str, entities: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
        """Delete entities {join_key: [values]} from `view` in both stores, durably: {"seq",
        "deleted"}. Semantics: store/deletes.py and README "Deleting and forgetting"."""
        return forgetting.delete(
            self._writes, self._off, self._deleted, self._keys, self._snap, view, entities
        )

    @engine_errors
    def forget(self, entity: str, keys: Sequence[Any]) -> dict[str, Any]:
        """Delete the entities `keys` (values of the entity's join key) from every view keyed by
        `entity`, or having it in a composite key, in one record: {"seq", "deleted", "views"}."""
        return forgetting.forget(
            self._writes, self._off, self._deleted, self._keys, self._snap, entity, keys
        )

    @engine_errors
    def push(self, push_source_name: str, data: Any) -> int:
        """Ingest through a push source (it names the feature view)."""
        source = self._snap.defs.push_sources.get(push_source_name)
        if source is None:
            raise UnknownPushSourceError(push_source_name)
        return self.ingest(source.feature_view, data)

    # ----------------------------------------------------------------------------- reads

    @engine_errors
    def get_online_features(
        self,
        features: str | Sequence[str],
        entities: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
        full_feature_names: bool = False,
    ) -> OnlineResponse:
        """Latest feature values of each entity; see OnlineResponse for statuses and shapes."""
        while True:
            self._writes.check_readable()
            snap = self._snap
            try:
                res = read_online(
                    snap, features, entities, full_feature_names, self._keys.hash_bits
                )
            except OnlineClosedError:
                # apply() or close() closed a tree under this read. Rare: wait for it to finish,
                # which it does holding the sequencing lock, then read the new snapshot.
                with self._writes.lock:
                    pass
                if self._snap is snap:  # no apply swapped it: close() closed the tree
                    raise ClosedError(
                        f"the FeatureStore at {str(self._root)!r} is closed"
                    ) from None
                continue
            self._counters["online_lookups"] += res.n
            return res

    @engine_errors
    def get_historical_features(
        self,
        entity_df: Any,
        features: str | Sequence[str],
        full_feature_names: bool = False,
        as_of_seq: int | None = None,
    ) -> pa.Table:
        """Point-in-time join; the result's schema metadata names the seq (`rickhouse.seq`)."""
        self._writes.check_readable()
        forgetting.check_as_of(self._deleted, forgetting.views_of(self._snap, features), as_of_seq)
        last = self._writes.applied_seq
        plan = self._snap.plan(features, full_feature_names)
        if plan.on_demand is not None:  # computed features over the joined rows
            return historical_on_demand(self._off, self._snap, entity_df, plan, as_of_seq, last)
        return historical_features(
            self._off, self._snap, entity_df, features, full_feature_names, as_of_seq, last
        )

    @engine_errors
    def export_training(
        self,
        entities: Any = None,
        features: str | Sequence[str] | None = None,
        out_path: str | Path | None = None,
        as_of_seq: int | None = None,
        full_feature_names: bool = False,
        *,
        entities_as_of: Any = None,
    ) -> dict[str, Any]:
        """Stream a point-in-time join to Parquet at `out_path`: {"seq", "rows", "path"}.

        `entities_as_of` (ISO 8601 text, epoch seconds or a datetime) instead of `entities`:
        the latest row of every entity at that instant, ttl applied, one row per key ordered
        by key, streamed in bounded memory (store/training.py `export_entities_as_of`)."""
        return training_export.export_training(
            self,
            entities,
            features,
            out_path,
            as_of_seq,
            full_feature_names,
            entities_as_of=entities_as_of,
        )

    @engine_errors
    def offline_files(self, view: str, as_of_seq: int | None = None) -> dict[str, Any]:
        """The Parquet files of `view`'s offline history as of `as_of_seq` (default: the last
        seq), for another engine to read: absolute paths, schema, the row filter, the timestamp
        encoding and the version order (store/published.py). Flushes the view's buffer first;
        listed files stay on disk `snapshot_grace_s` after compaction or retention replaces
        them."""
        self._writes.check_readable()
        forgetting.check_as_of(self._deleted, [view], as_of_seq)
        return offline_files(self._off, self._snap, view, as_of_seq, self._writes.applied_seq)

    # ----------------------------------------------------------------------------- maintenance

    @engine_errors
    def audit(self) -> dict[str, dict[str, Any]]:
        """Per view: offline latest row per entity vs the online scan; mismatches must be 0.

        Holds ingests for its duration: it compares the stores at one quiescent point."""
        return admin.audit(self)

    @engine_errors
    def flush(self) -> None:
        """Make both stores durable up to the last seq (as of the call) and trim the commit log.

        Ingests continue meanwhile; only the wait for batches already logged holds them."""
        admin.flush(self)

    @engine_errors
    def compact(self) -> None:
        """Run every pending compaction of both stores now; ingests and reads continue."""
        admin.compact(self)

    @engine_errors
    def stats(self) -> dict[str, Any]:
        return admin.stats(self)

    def stale_views(self) -> list[str]:
        """Views with a `freshness` objective that no batch met: nothing ingested for longer
        than it (judged on ingest time; store/freshness.py). Cheap: no I/O."""
        return self._fresh.stale(self._snap.defs)

    @engine_errors
    def close(self) -> None:
        """Flush both stores, trim the log, release the writer lock. Idempotent."""
        admin.close(self)
