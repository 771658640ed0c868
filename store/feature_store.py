"""FeatureStore: the facade users program against. Read this file first; each method hands its
work to the module that owns it.

- opening: the registry (store/registry.py), the engines of every view and the snapshot reads
  see (store/snapshot.py), then recovery from the commit log (store/recovery.py);
- `apply`: plan the change (store/registry.py), carry it out (store/evolution.py);
- `ingest` / `push`: validate (store/batch.py `convert_batch`), then the write path
  (store/write_path.py: sequence, log, group fsync, apply in seq order; keys by
  store/key_resolution.py);
- reads: online (store/online_read.py), historical and export (store/training.py);
- `audit` (store/audit.py), `flush`, `compact`, `stats`, `close`.
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
from store.audit import audit_view
from store.batch import convert_batch
from store.boundary import engine_errors
from store.commitlog import CommitLog
from store.definitions import Definitions, FeatureView
from store.errors import ClosedError, UnknownPushSourceError
from store.evolution import evolve
from store.key_resolution import KeyResolver
from store.lock import WriterLock
from store.online_read import read_online
from store.online_response import OnlineResponse
from store.recovery import recover
from store.registry import Registry, plan_apply
from store.snapshot import Snapshot, close_engines, open_engines, open_tree, resolve_tree_options
from store.training import export, historical_features
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
                recovered = recover(self._log, self._registry, self._snap, self._off, replay)
            except BaseException:
                close_engines(self._snap, self._off)
                raise
        except BaseException:
            self._writer_lock.release()
            raise
        self._writes = WritePath(
            self._root, self._log, self._registry, self._off, self._keys, self._current, recovered
        )

    def _current(self) -> Snapshot:
        return self._snap

    def _open_tree(self, view: FeatureView) -> LSMTree:
        return open_tree(self._root, self._registry, view, self._tree_options)

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
            seq = self._writes.applied_seq
            self._snap = evolve(
                self._root, self._registry, self._off, snap, plan, seq, self._open_tree
            )
            return plan.changes

    @engine_errors
    def ingest(self, view: str, data: Any) -> int:
        """Validate, log durably, apply to both stores; return the batch's seq.

        data: pyarrow Table/RecordBatch, pandas DataFrame or dict of columns. A bad batch raises
        ValidationError (naming view, column, row) and nothing of it is written.
        """
        self._writes.check_open()
        fv = self._snap.view(view)
        table, missing_created = convert_batch(fv, data)
        return self._writes.write(fv, table, missing_created)

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
        last = self._writes.applied_seq
        return historical_features(
            self._off, self._snap, entity_df, features, full_feature_names, as_of_seq, last
        )

    @engine_errors
    def export_training(
        self,
        entities: Any,
        features: str | Sequence[str],
        out_path: str | Path,
        as_of_seq: int | None = None,
        full_feature_names: bool = False,
    ) -> dict[str, Any]:
        """Stream a point-in-time join to Parquet at `out_path`: {"seq", "rows", "path"}."""
        self._writes.check_readable()
        last = self._writes.applied_seq
        out = export(
            self._off, self._snap, entities, features, out_path, full_feature_names, as_of_seq, last
        )
        self._counters["exports"] += 1
        return out

    # ----------------------------------------------------------------------------- maintenance

    @engine_errors
    def audit(self) -> dict[str, dict[str, Any]]:
        """Per view: offline latest row per entity vs the online scan; mismatches must be 0.

        Holds ingests for its duration: it compares the stores at one quiescent point."""
        with self._admin, self._writes.lock:
            self._writes.quiesce()
            out = {}
            for name, view in self._snap.defs.feature_views.items():
                tree = self._snap.trees[name]
                out[name] = audit_view(view, self._off, self._snap.storage[name], tree)
                if out[name]["mismatches"]:
                    log.error(
                        "audit of %s: %d mismatch(es): %s",
                        name,
                        out[name]["mismatches"],
                        out[name]["examples"],
                    )
            return out

    @engine_errors
    def flush(self) -> None:
        """Make both stores durable up to the last seq (as of the call) and trim the commit log.

        Ingests continue meanwhile; only the wait for batches already logged holds them."""
        with self._admin:
            with self._writes.lock:
                self._writes.quiesce()
            for tree in self._snap.trees.values():
                tree.flush()
            self._off.flush()
            self._writes.trim_log()

    @engine_errors
    def compact(self) -> None:
        """Run every pending compaction of both stores now; ingests and reads continue."""
        with self._admin:
            self._writes.check_open()
            for tree in self._snap.trees.values():
                tree.compact()
            self._off.compact()
            self._writes.trim_log()

    @engine_errors
    def stats(self) -> dict[str, Any]:
        off_stats = self._off.stats()
        snap = self._snap
        return {
            "last_seq": self._writes.applied_seq,
            "commit_log": self._log.stats(),
            "online": {v: t.stats() for v, t in snap.trees.items()},
            "offline": {v: off_stats.get(name, {}) for v, name in snap.storage.items()},
            "counters": {
                "ingested_rows": self._writes.ingested_rows,
                "ingest_batches": self._writes.ingest_batches,
                **self._counters,
            },
        }

    @engine_errors
    def close(self) -> None:
        """Flush both stores, trim the log, release the writer lock. Idempotent."""
        with self._admin, self._writes.lock:
            if not self._writes.stop():
                return
            try:
                close_engines(self._snap, self._off)
                if not self._writes.failed:
                    self._writes.release_segments()
                self._log.close()
            finally:
                self._writer_lock.release()
