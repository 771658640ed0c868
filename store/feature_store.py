"""FeatureStore: definitions, one commit log feeding both stores, recovery, reads and the audit.

Write path (`ingest`): validate and convert the whole batch (no lock held), then under the ingest
lock resolve keys, take the next seq, stamp created_timestamp and append the record to the
commit log; fsync outside the lock (concurrent ingests share one fsync); then, in seq order,
apply the batch to the online tree and the offline store and acknowledge with its seq. Nothing is
applied to a store before it is durable in the log, so on open every store can be replayed from
its own durable_seq and both sides agree.

Thread-safety: every public method may be called from any thread. An ingest holds the ingest
lock only to sequence and append; its fsync and its apply (in seq order) run outside it, so
concurrent ingests overlap. Reads (`get_online_features`,
historical queries, exports) take no store lock: they read an immutable snapshot of the
definitions and trees that `apply` swaps atomically, and the engines' own read paths never wait
for writes or compaction (only a read that meets a tree `apply` is reopening waits for that
apply to finish, then reads again). `apply`, `audit` and `close` wait until every
acknowledged ingest has been applied and hold the ingest lock while they run; `flush` waits for
that too, then flushes while ingests continue; `compact` never holds ingests.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from offline import OfflineOptions, OfflineStore
from online import ClosedError as OnlineClosedError
from online import Field, LSMTree, TreeOptions
from store.audit import audit_view
from store.batch import CREATED_TS, EVENT_TS, convert_batch, store_schema
from store.commitlog import CommitLog
from store.definitions import Definitions, FeatureView
from store.dtypes import TIMESTAMP, arrow_type
from store.entities import parse_entities
from store.errors import (
    ClosedError,
    ConflictError,
    StoreError,
    UnknownPushSourceError,
    UnknownViewError,
    ValidationError,
)
from store.features import FeaturePlan, plan_features
from store.historical import (
    entity_errors,
    entity_table,
    feature_queries,
    logical_names,
    with_seq,
)
from store.keys import (
    ENTITY_KEY_FIELD,
    KEY_HASH_BITS,
    PendingClaims,
    bucket_keys,
    canonical_keys,
    int_to_key,
    resolve_keys,
)
from store.lock import WriterLock
from store.online_read import entity_lookup, lookup_view
from store.online_response import OnlineResponse
from store.registry import Registry, plan_apply

log = logging.getLogger(__name__)

KEY_COLUMN = (
    "_key"  # resolved uint64 key column of a commit-log payload — on-disk format, do not change
)


@dataclass(frozen=True)
class _Snapshot:
    """What reads need, swapped atomically by apply: definitions, trees, cached plans."""

    defs: Definitions
    trees: Mapping[str, LSMTree]
    storage: Mapping[str, str]  # view -> its storage name (online dir, offline view)
    plans: dict[tuple[Any, bool], FeaturePlan]


class FeatureStore:
    """A feature store rooted at a directory: opens or creates it and recovers on open.

    root: the directory (`registry.json`, `LOCK`, `commitlog/`, `online/<view>/`, `offline/`).
    online_index, delta: index mode and PLR error bound of the online trees.
    tree_options / offline_options: full engine options (online_index and delta override).
    segment_bytes: commit-log segment size before rotation.
    _key_hash_bits: bucket bits of hashed keys; tests shrink it to force collisions.
    """

    def __init__(
        self,
        root: str | Path,
        online_index: str = "auto",
        delta: int = 8,
        *,
        tree_options: TreeOptions | None = None,
        offline_options: OfflineOptions | None = None,
        segment_bytes: int = 64 << 20,
        _key_hash_bits: int = KEY_HASH_BITS,
    ) -> None:
        self._root = Path(root)
        self._root.mkdir(parents=True, exist_ok=True)
        base = tree_options or TreeOptions()
        self._tree_options = replace(base, index=online_index, delta=delta)
        self._offline_options = offline_options or OfflineOptions()
        self._hash_bits = _key_hash_bits
        # Lock order: _lock (sequencing: seq, key slots, log append) -> _applied (apply in seq
        # order) -> _claims_lock. An ingest holds _lock only to sequence and append, so one
        # batch's fsync and apply overlap the next one's sequencing.
        # _admin (outermost) serializes apply, audit, flush, compact and close with each other,
        # so flush and compact can run the engines' work without blocking ingests.
        self._admin = threading.RLock()
        self._lock = threading.Lock()
        self._applied = threading.Condition(threading.RLock())
        self._claims_lock = threading.Lock()
        self._claims: dict[str, PendingClaims] = {}
        self._counters = {
            "ingested_rows": 0,
            "ingest_batches": 0,
            "online_lookups": 0,
            "exports": 0,
        }
        self._failed: BaseException | None = None
        self._closed = False
        self._writer_lock = WriterLock(self._root)
        self._off: OfflineStore | None = None
        trees: dict[str, LSMTree] = {}
        try:
            self._registry = Registry(self._root)
            defs = self._registry.definitions
            for view in defs.feature_views.values():
                trees[view.name] = self._open_tree(view)
            self._off = OfflineStore(self._root, self._offline_options)
            for view in defs.feature_views.values():
                self._register_offline(view)
            self._snap = _Snapshot(defs, trees, self._storage_names(defs), {})
            self._log = CommitLog(self._root / "commitlog", segment_bytes)
            self._recover()
        except BaseException:
            for tree in trees.values():
                tree.close()
            if self._off is not None:
                self._off.close()
            self._writer_lock.release()
            raise

    # ----------------------------------------------------------------------------- properties

    @property
    def root(self) -> Path:
        return self._root

    @property
    def last_seq(self) -> int:
        """The highest acknowledged (applied) seq."""
        return self._applied_seq

    def definitions(self) -> dict[str, Any]:
        """The applied definitions, in the YAML shape."""
        return self._snap.defs.to_dict()

    def feature_view(self, name: str) -> dict[str, Any]:
        return self._view(name).to_dict()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- opening

    def _open_tree(self, view: FeatureView) -> LSMTree:
        fields = [Field(ENTITY_KEY_FIELD, "string")] if view.hashed else []
        fields += [Field(f.name, f.dtype) for f in view.features]
        path = self._root / "online" / self._registry.storage_name(view.name)
        return LSMTree(path, fields, self._tree_options)

    def _register_offline(self, view: FeatureView) -> None:
        assert self._off is not None
        name = self._registry.storage_name(view.name)
        self._off.register_view(name, store_schema(view), view.join_keys)

    def _storage_names(self, defs: Definitions) -> dict[str, str]:
        return {v: self._registry.storage_name(v) for v in defs.feature_views}

    def _recover(self) -> None:
        """Replay the commit log above each store's durable_seq; cut a torn tail."""
        defs, trees = self._snap.defs, self._snap.trees
        assert self._off is not None
        off = self._off
        online_from = {v: t.last_seq for v, t in trees.items()}
        storage = self._snap.storage
        offline_from = {v: off.durable_seq(storage[v]) for v in trees}
        replayed = 0
        last_created = 0
        for rec in self._log.recover():
            view = defs.feature_views.get(rec.view)
            if view is None or rec.seq <= self._registry.reset_seq.get(rec.view, 0):
                continue
            to_online = rec.seq > online_from[rec.view]
            to_offline = rec.seq > offline_from[rec.view]
            if not (to_online or to_offline):
                continue
            table = _conform(view, rec.table())
            created = table.column(CREATED_TS).combine_chunks().cast(pa.int64()).to_numpy()
            if len(created):
                last_created = max(last_created, int(created.max()))
            self._apply_batch(view, rec.seq, table, to_online, to_offline)
            replayed += 1
        stores_seq = max([t.last_seq for t in trees.values()] + [off.max_seq(), 0])
        self._applied_seq = max(self._log.last_seq, stores_seq)
        self._next_seq = self._applied_seq + 1
        self._last_created = last_created
        if replayed:
            log.info("recovered %d commit-log record(s) up to seq %d", replayed, self._applied_seq)
        self._release_segments()

    # ----------------------------------------------------------------------------- apply

    def apply(
        self, definitions: str | Path | Mapping[str, Any], force: bool = False
    ) -> dict[str, Any]:
        """Apply definitions (a YAML path or a dict); return what changed.

        Identical definitions change nothing; added features, views, services and push sources
        are allowed. A type or key change, or dropping a feature or view that holds data, raises
        DefinitionError unless `force=True`, which deletes that view's data.
        """
        new = Definitions.load(definitions)
        with self._admin, self._lock:
            self._quiesce()
            old = self._snap.defs
            trees = dict(self._snap.trees)
            plan = plan_apply(old, new, lambda v: trees[v].last_seq > 0, force)
            if not plan.changed and not plan.reset_views:
                return plan.changes
            reset_seq = dict(self._registry.reset_seq)
            generation = dict(self._registry.generation)
            old_storage = self._snap.storage
            for name in plan.reset_views:
                reset_seq[name] = self._applied_seq
                generation[name] = generation.get(name, 0) + 1
                with self._claims_lock:  # slots of the dropped incarnation mean nothing now
                    self._claims.pop(name, None)
            # Views new to this store get their trees before the registry names them: a tree
            # that cannot be created (a file system limit, no threads left) refuses the apply
            # whole, instead of saving a registry the store could never open again.
            added = self._open_added(plan.definitions, trees)
            try:
                self._registry.save(plan.definitions, reset_seq, generation)
            except BaseException:
                for tree in added.values():
                    tree.close()
                raise
            if plan.reset_views:
                self._drop_data(plan.reset_views, trees, old_storage)
            for name, view in plan.definitions.feature_views.items():
                if name in added:
                    trees[name] = added[name]
                    self._register_offline(view)
                elif name not in trees or view != old.feature_views.get(name):
                    if name in trees and name not in plan.reset_views:
                        trees[name].close()
                    trees[name] = self._open_tree(view)
                    self._register_offline(view)
            storage = self._storage_names(plan.definitions)
            self._snap = _Snapshot(plan.definitions, trees, storage, {})
            log.info("applied definitions: %s", {k: v for k, v in plan.changes.items() if v})
            return plan.changes

    def _open_added(self, defs: Definitions, trees: Mapping[str, LSMTree]) -> dict[str, LSMTree]:
        """Open the trees of the views of `defs` that have none yet; all of them, or none."""
        added: dict[str, LSMTree] = {}
        try:
            for name, view in defs.feature_views.items():
                if name not in trees:
                    added[name] = self._open_tree(view)
        except BaseException:
            for tree in added.values():
                tree.close()
            raise
        return added

    def _drop_data(
        self, views: set[str], trees: dict[str, LSMTree], old_storage: Mapping[str, str]
    ) -> None:
        """Forced apply: close and delete the online trees of `views`. The offline store has no
        call to drop a view, so the new incarnation gets a new storage name (registry
        generation) and the old offline files are simply never read again."""
        for name in views:
            tree = trees.pop(name, None)
            if tree is not None:
                tree.close()
            if name in old_storage:
                shutil.rmtree(self._root / "online" / old_storage[name], ignore_errors=True)
        log.warning("dropped the data of feature view(s) %s", sorted(views))

    # ----------------------------------------------------------------------------- ingest

    def ingest(self, view: str, data: Any) -> int:
        """Validate, log durably, apply to both stores; return the batch's seq.

        data: pyarrow Table/RecordBatch, pandas DataFrame or dict of columns. A bad batch raises
        ValidationError (naming view, column, row) and nothing of it is written.
        """
        self._check_open()
        fv = self._view(view)
        table, missing_created = convert_batch(fv, data)
        canon = base = None
        if fv.hashed:
            cols = [table.column(k).to_pylist() for k, _ in fv.keys]
            canon = canonical_keys(cols, [t for _, t in fv.keys])
            base = bucket_keys(canon, self._hash_bits)
        with self._lock:
            self._check_open()
            if self._snap.defs.feature_views.get(view) is not fv:
                raise ConflictError(
                    f"feature view {view!r} was redefined while this batch was being validated; "
                    "nothing was written: send it again"
                )
            seq = self._next_seq
            if missing_created is not None:
                now = max(time.time_ns(), self._last_created)
                self._last_created = now
                given = _column_numpy(table, CREATED_TS, np.int64)
                created = pa.array(np.where(missing_created, now, given)).cast(TIMESTAMP)
                table = table.set_column(
                    table.schema.get_field_index(CREATED_TS), CREATED_TS, created
                )
            try:
                with self._claims_lock:
                    payload = self._with_keys(fv, seq, table, canon, base)
                self._log.append(seq, view, payload)
            except ValidationError:
                self._release_claims(view, seq)
                raise
            except BaseException as e:
                self._fail(e)
                raise
            self._next_seq = seq + 1
        try:
            self._log.sync(seq)
        except BaseException as e:
            self._fail(e)
            raise
        with self._applied:
            self._applied.wait_for(lambda: self._applied_seq == seq - 1 or self._failed is not None)
            if self._failed is not None:
                raise StoreError(f"the store failed before batch {seq} was applied: {self._failed}")
            try:
                self._apply_batch(fv, seq, payload, True, True)
            except BaseException as e:
                self._fail(e)
                raise
            self._applied_seq = seq
            self._counters["ingested_rows"] += table.num_rows
            self._counters["ingest_batches"] += 1
            self._applied.notify_all()
        if fv.hashed:
            self._release_claims(view, seq)
        if len(self._log._segments) > 1 and self._lock.acquire(blocking=False):
            try:  # trim the log when it is free; flush, compact and close trim it too
                if not self._closed and self._failed is None:
                    self._release_segments()
            finally:
                self._lock.release()
        return seq

    def _release_claims(self, view: str, seq: int) -> None:
        with self._claims_lock:
            claims = self._claims.get(view)
            if claims is not None:
                claims.release(seq)

    def push(self, push_source_name: str, data: Any) -> int:
        """Ingest through a push source (it names the feature view)."""
        source = self._snap.defs.push_sources.get(push_source_name)
        if source is None:
            raise UnknownPushSourceError(push_source_name)
        return self.ingest(source.feature_view, data)

    def _with_keys(
        self,
        fv: FeatureView,
        seq: int,
        table: pa.Table,
        canon: np.ndarray | None,
        base: np.ndarray | None,
    ) -> pa.Table:
        """The commit-log payload: resolved uint64 keys (and canonical key text) + the batch."""
        if canon is None or base is None:
            keys = int_to_key(table.column(0).combine_chunks().to_numpy())
            return table.add_column(0, KEY_COLUMN, pa.array(keys, pa.uint64()))
        index: dict[str, int] = {}
        inverse = np.fromiter(
            (index.setdefault(c, len(index)) for c in canon), dtype=np.int64, count=len(canon)
        )
        first = np.full(len(index), -1, dtype=np.int64)
        first[inverse[::-1]] = np.arange(len(canon) - 1, -1, -1)  # first row of each entity
        tree = self._snap.trees[fv.name]
        claims = self._claims.setdefault(fv.name, PendingClaims())
        # unique entities in first-appearance order: new ones claim slots deterministically
        resolved = resolve_keys(
            canon[first], base[first], entity_lookup(tree), claims, seq, fv.name
        )
        keys = resolved[inverse]
        table = table.add_column(0, KEY_COLUMN, pa.array(keys, pa.uint64()))
        return table.append_column(ENTITY_KEY_FIELD, pa.array(canon.tolist(), pa.string()))

    def _apply_batch(
        self, fv: FeatureView, seq: int, payload: pa.Table, online: bool, offline: bool
    ) -> None:
        """Apply one logged batch (payload as logged, conformed to `fv`) to the chosen stores."""
        if payload.num_rows == 0:
            return
        if online:
            names = ([ENTITY_KEY_FIELD] if fv.hashed else []) + [f.name for f in fv.features]
            self._snap.trees[fv.name].write(
                seq,
                _column_numpy(payload, KEY_COLUMN, np.uint64),
                _column_numpy(payload, EVENT_TS, np.int64),
                _column_numpy(payload, CREATED_TS, np.int64),
                payload.select(names),
            )
        if offline:
            assert self._off is not None
            name = self._snap.storage[fv.name]
            self._off.append(name, payload.select(store_schema(fv).names), seq)

    def _fail(self, e: BaseException) -> None:
        """A log or store write failed midway: refuse further writes until reopened."""
        log.error("feature store failed, refusing writes until it is reopened: %s", e)
        self._failed = e
        with self._applied:
            self._applied.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"the FeatureStore at {str(self._root)!r} is closed")
        if self._failed is not None:
            raise StoreError(
                f"the FeatureStore at {str(self._root)!r} failed ({self._failed}); reopen it to recover"
            )

    def _quiesce(self) -> None:
        """With the ingest lock held: wait until every logged batch has been applied."""
        self._check_open()
        with self._applied:
            self._applied.wait_for(
                lambda: self._applied_seq == self._next_seq - 1 or self._failed is not None
            )
        self._check_open()

    def _release_segments(self) -> None:
        defs, trees, storage = self._snap.defs, self._snap.trees, self._snap.storage
        assert self._off is not None
        off = self._off
        reset = self._registry.reset_seq

        def durable(view: str, seq: int) -> bool:
            if view not in defs.feature_views or seq <= reset.get(view, 0):
                return True
            return trees[view].durable_seq >= seq and off.durable_seq(storage[view]) >= seq

        self._log.release(durable)

    # ----------------------------------------------------------------------------- reads

    def _view(self, name: str) -> FeatureView:
        view = self._snap.defs.feature_views.get(name)
        if view is None:
            raise UnknownViewError(name)
        return view

    def _plan(self, snap: _Snapshot, features: str | Sequence[str], full: bool) -> FeaturePlan:
        key = (features if isinstance(features, str) else tuple(features), full)
        plan = snap.plans.get(key)
        if plan is None:
            plan = plan_features(snap.defs, features, full)
            if len(snap.plans) < 4096:
                snap.plans[key] = plan
        return plan

    def get_online_features(
        self,
        features: str | Sequence[str],
        entities: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
        full_feature_names: bool = False,
    ) -> OnlineResponse:
        """Latest feature values of each entity; see OnlineResponse for statuses and shapes."""
        if self._closed:
            raise ClosedError(f"the FeatureStore at {str(self._root)!r} is closed")
        snap = self._snap
        plan = self._plan(snap, features, full_feature_names)
        keys, n = parse_entities(entities, plan.join_keys)
        now = time.time_ns()
        try:
            lookups = [
                lookup_view(snap.trees[r.view.name], r, keys, self._hash_bits, now)
                for r in plan.reads
            ]
        except OnlineClosedError:
            # apply() (or close()) closed a tree under this read. Rare: wait for it to finish,
            # which it does holding the ingest lock, then read the new snapshot.
            with self._lock:
                pass
            if self._closed or self._snap is snap:
                raise ClosedError(f"the FeatureStore at {str(self._root)!r} is closed") from None
            return self.get_online_features(features, entities, full_feature_names)
        self._counters["online_lookups"] += n
        return OnlineResponse(keys, dict(plan.join_keys), lookups, n)

    def _as_of(self, as_of_seq: int | None) -> int:
        if as_of_seq is None:
            return self._applied_seq
        if not isinstance(as_of_seq, int) or as_of_seq < 0 or as_of_seq > self._applied_seq:
            raise ValidationError(
                f"as_of_seq must be an int between 0 and the last seq {self._applied_seq}, got {as_of_seq!r}"
            )
        return as_of_seq

    def get_historical_features(
        self,
        entity_df: Any,
        features: str | Sequence[str],
        full_feature_names: bool = False,
        as_of_seq: int | None = None,
    ) -> pa.Table:
        """Point-in-time join; the result's schema metadata names the seq (`rickhouse.seq`)."""
        self._check_readable()
        snap = self._snap
        plan = self._plan(snap, features, full_feature_names)
        seq = self._as_of(as_of_seq)
        assert self._off is not None
        with entity_errors():
            table = self._off.get_historical(
                entity_table(entity_df, plan),
                feature_queries(plan, snap.storage),
                as_of_seq=seq,
                full_feature_names=full_feature_names,
            )
        if full_feature_names:
            table = logical_names(table, plan, snap.storage)
        return with_seq(table, seq)

    def export_training(
        self,
        entities: Any,
        features: str | Sequence[str],
        out_path: str | Path,
        as_of_seq: int | None = None,
        full_feature_names: bool = False,
    ) -> dict[str, Any]:
        """Stream a point-in-time join to Parquet at `out_path`: {"seq", "rows", "path"}."""
        self._check_readable()
        snap = self._snap
        plan = self._plan(snap, features, full_feature_names)
        seq = self._as_of(as_of_seq)
        assert self._off is not None
        if full_feature_names and any(snap.storage[r.view.name] != r.view.name for r in plan.reads):
            # a view in its second storage generation would export as `<view>__g<n>__feature`:
            # join in memory and rename instead of streaming (the offline export cannot rename)
            table = self.get_historical_features(entities, features, True, seq)
            pq.write_table(table, str(out_path), compression="zstd")
            self._counters["exports"] += 1
            return {"seq": seq, "rows": table.num_rows, "path": str(out_path)}
        with entity_errors():
            res = self._off.export(
                entity_table(entities, plan),
                feature_queries(plan, snap.storage),
                str(out_path),
                as_of_seq=seq,
                full_feature_names=full_feature_names,
            )
        self._counters["exports"] += 1
        log.info("exported %d rows at seq %d to %s", res.rows, res.seq, res.path)
        return {"seq": res.seq, "rows": res.rows, "path": res.path}

    def _check_readable(self) -> None:
        if self._closed:
            raise ClosedError(f"the FeatureStore at {str(self._root)!r} is closed")

    # ----------------------------------------------------------------------------- maintenance

    def audit(self) -> dict[str, dict[str, Any]]:
        """Per view: offline latest row per entity vs the online scan; mismatches must be 0.

        Holds ingests for its duration: it compares the stores at one quiescent point."""
        with self._admin, self._lock:
            self._quiesce()
            assert self._off is not None
            out = {}
            for name, view in self._snap.defs.feature_views.items():
                offline = self._off.latest_per_entity(self._snap.storage[name])
                online = self._snap.trees[name].scan()
                out[name] = audit_view(view, offline, online)
                if out[name]["mismatches"]:
                    log.error(
                        "audit of %s: %d mismatch(es): %s",
                        name,
                        out[name]["mismatches"],
                        out[name]["examples"],
                    )
            return out

    def flush(self) -> None:
        """Make both stores durable up to the last seq (as of the call) and trim the commit log.

        Ingests continue meanwhile; only the wait for batches already logged holds them."""
        with self._admin:
            with self._lock:
                self._quiesce()
            for tree in self._snap.trees.values():
                tree.flush()
            assert self._off is not None
            self._off.flush()
            self._trim_log()

    def compact(self) -> None:
        """Run every pending compaction of both stores now; ingests and reads continue."""
        with self._admin:
            self._check_open()
            for tree in self._snap.trees.values():
                tree.compact()
            assert self._off is not None
            self._off.compact()
            self._trim_log()

    def _trim_log(self) -> None:
        with self._lock:
            if not self._closed and self._failed is None:
                self._release_segments()

    def stats(self) -> dict[str, Any]:
        assert self._off is not None
        off_stats = self._off.stats()
        return {
            "last_seq": self._applied_seq,
            "commit_log": self._log.stats(),
            "online": {v: t.stats() for v, t in self._snap.trees.items()},
            "offline": {v: off_stats.get(name, {}) for v, name in self._snap.storage.items()},
            "counters": dict(self._counters),
        }

    def close(self) -> None:
        """Flush both stores, trim the log, release the writer lock. Idempotent."""
        with self._admin, self._lock:
            if self._closed:
                return
            if self._failed is None:
                with self._applied:
                    self._applied.wait_for(
                        lambda: self._applied_seq == self._next_seq - 1 or self._failed is not None
                    )
            self._closed = True
            try:
                for tree in self._snap.trees.values():
                    tree.close()
                assert self._off is not None
                self._off.close()
                if self._failed is None:
                    self._release_segments()
                self._log.close()
            finally:
                self._writer_lock.release()


def _column_numpy(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return np.ascontiguousarray(col.to_numpy(zero_copy_only=False), dtype=dtype)


def _conform(view: FeatureView, table: pa.Table) -> pa.Table:
    """A logged batch of an older schema of `view`: add its later features as null columns."""
    for f in view.features:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, arrow_type(f.dtype)))
    return table
