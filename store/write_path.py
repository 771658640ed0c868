"""The write path: sequencing, durability and in-order apply of ingested batches (group commit).

`WritePath.write(view, table, missing_created)` takes a batch validated by
store.batch.convert_batch and:
1. under the sequencing lock (`lock`): takes the next seq, stamps created_timestamp where the
   caller gave none (never below the last stamp, so a clock step back cannot reorder
   versions), resolves keys (store/key_resolution.py) and appends the record to the commit log;
2. outside it: fsyncs the log (CommitLog.sync: concurrent batches share one fdatasync);
3. in seq order (the `_applied` condition): applies the batch to the online tree and the
   offline store, then acknowledges it with its seq.
Nothing reaches a store before it is durable in the log, so recovery (store/recovery.py) can
replay each store from its own durable_seq. A failure after the log append (an fsync or an
engine write) latches the store as failed: every later write is refused until it is reopened.

Lock order: `lock` -> `_applied` -> the key resolver's claims lock. The store's admin lock, if
held, is taken before all of them. A writer holds `lock` only to sequence and append, so one
batch's fsync and apply overlap the next batch's sequencing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from offline import OfflineStore
from store.batch import CREATED_TS, EVENT_TS, store_schema
from store.commitlog import CommitLog
from store.definitions import FeatureView
from store.dtypes import TIMESTAMP
from store.errors import ClosedError, ConflictError, StoreError, ValidationError
from store.key_resolution import KEY_COLUMN, HashedKeys, KeyResolver
from store.keys import ENTITY_KEY_FIELD
from store.recovery import Recovered, release_segments
from store.registry import Registry
from store.snapshot import Snapshot

log = logging.getLogger(__name__)


class WritePath:
    """Sequences, logs and applies the batches of one store; holds its failure latch."""

    def __init__(
        self,
        root: Path,
        commit_log: CommitLog,
        registry: Registry,
        off: OfflineStore,
        keys: KeyResolver,
        snapshot: Callable[[], Snapshot],
        recovered: Recovered,
    ) -> None:
        self._root = root
        self._log = commit_log
        self._registry = registry
        self._off = off
        self._keys = keys
        self._snapshot = snapshot  # the store's current snapshot; swapped only under `lock`
        # The sequencing lock. apply(), audit() and close() of the store hold it too, to keep
        # new batches out while they run.
        self.lock = threading.Lock()
        # Signals each applied seq. Reentrant: a failing apply latches the failure within it.
        self._applied = threading.Condition(threading.RLock())
        self._next_seq = recovered.applied_seq + 1  # GUARDED_BY(lock)
        self._last_created = recovered.last_created  # GUARDED_BY(lock)
        self._closed = False  # GUARDED_BY(lock); read without it (a bool)
        self._applied_seq = recovered.applied_seq  # GUARDED_BY(_applied); read without it
        self._failed: BaseException | None = None  # GUARDED_BY(_applied); set once, never reset
        self.ingested_rows = 0  # GUARDED_BY(_applied)
        # the store's sticky table of deleted entities (store/deletes.py), set once after open:
        # filter_batch(view, table, missing_created, hashed) drops late events of them
        self.deleted: Any = None
        self.ingest_batches = 0  # GUARDED_BY(_applied)
        # Called with (view, event times as int64 ns) after each batch is acknowledged, on the
        # writer's thread (store/freshness.py); set before the first write, never changed.
        self.observers: list[Callable[[str, np.ndarray], None]] = []

    @property
    def applied_seq(self) -> int:
        """The highest acknowledged (applied) seq."""
        return self._applied_seq

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def failed(self) -> bool:
        return self._failed is not None

    def check_readable(self) -> None:
        """Raise ClosedError once closed (reads go on after a failure: the stores hold every
        acknowledged batch)."""
        if self._closed:
            raise ClosedError(f"the FeatureStore at {str(self._root)!r} is closed")

    def check_open(self) -> None:
        """Raise ClosedError once closed, StoreError once failed."""
        self.check_readable()
        if self._failed is not None:
            raise StoreError(
                f"the FeatureStore at {str(self._root)!r} failed ({self._failed}); reopen it to recover"
            )

    def write(self, view: FeatureView, table: pa.Table, missing_created: np.ndarray | None) -> int:
        """Log `table` durably, apply it to both stores in seq order; return its seq.

        table, missing_created: validated by store.batch.convert_batch for `view`. Raises
        ConflictError when `view` was redefined since (nothing written), ValidationError when a
        hashed key finds no free slot (nothing written)."""
        hashed = self._keys.prepare(view, table)
        with self.lock:
            self.check_open()
            snap = self._current_snapshot(view)
            seq = self._next_seq
            if self.deleted is not None:
                table, missing_created, hashed = self.deleted.filter_batch(
                    view, table, missing_created, hashed
                )
            if missing_created is not None:
                table = self._stamp_created(table, missing_created)
            payload = self._append_batch(snap, view, seq, table, hashed)
        self._sync(seq)
        with self._applied:
            self._wait_turn(seq, "batch")
            self._apply_batch(snap, view, seq, payload, table.num_rows)
        self._acknowledged(view, seq, table, hashed)
        return seq

    def write_at(self, seq: int, view: FeatureView, table: pa.Table) -> bool:
        """Externally sequenced write (store/external.py): log `table` at `seq`, fsync, apply.

        Returns False, writing nothing, when `seq` is at or below the applied seq. Seqs may
        have gaps. The whole write holds `lock` (one applier feeds an external root, in order).
        table: validated by convert_batch, created_timestamp given on every row."""
        hashed = self._keys.prepare(view, table)
        with self.lock:
            self.quiesce()
            if seq <= self._applied_seq:
                return False
            snap = self._current_snapshot(view)
            if self.deleted is not None:  # late events of deleted entities: dropped, counted
                table, _, hashed = self.deleted.filter_batch(view, table, None, hashed)
            payload = self._append_batch(snap, view, seq, table, hashed)
            with self._applied:
                self._sync(seq)
                self._apply_batch(snap, view, seq, payload, table.num_rows)
        self._acknowledged(view, seq, table, hashed)
        return True

    def mark_at(self, seq: int, view_name: str, marker: pa.Table) -> bool:
        """Move an externally sequenced position to `seq` with a durable marker record that no
        store applies (`view_name` is no feature view). False, writing nothing, when `seq` is at
        or below the applied seq."""
        with self.lock:
            self.quiesce()
            if seq <= self._applied_seq:
                return False
            self.append_durably(seq, view_name, marker)
            with self._applied:
                self._applied_seq = seq
                self._applied.notify_all()
        return True

    def append_durably(self, seq: int, name: str, payload: pa.Table) -> None:
        """Caller holds `lock`, every logged batch applied: append the record `name` at `seq`
        and fsync it. A failure latches the store."""
        try:
            self._log.append(seq, name, payload)
            self._next_seq = seq + 1
            self._log.sync(seq)
        except BaseException as e:
            self._fail(e)
            raise

    def _current_snapshot(self, view: FeatureView) -> Snapshot:
        """Caller holds `lock`: the current snapshot; ConflictError when `view` is no longer
        the definition in it (redefined while the batch was validated: nothing written)."""
        snap = self._snapshot()
        if snap.defs.feature_views.get(view.name) is not view:
            raise ConflictError(
                f"feature view {view.name!r} was redefined while this batch was being "
                "validated; nothing was written: send it again"
            )
        return snap

    def _append_batch(
        self,
        snap: Snapshot,
        view: FeatureView,
        seq: int,
        table: pa.Table,
        hashed: HashedKeys | None,
    ) -> pa.Table:
        """Caller holds `lock`: resolve keys, append the batch's record at `seq` (not yet
        fsynced) and take `seq`; return the payload as logged. A ValidationError releases the
        key claims (nothing written); any other failure latches the store."""
        try:
            payload = self._keys.payload(view, seq, table, hashed, snap.trees[view.name])
            self._log.append(seq, view.name, payload)
        except ValidationError:
            self._keys.release(view.name, seq)
            raise
        except BaseException as e:
            self._fail(e)
            raise
        self._next_seq = seq + 1
        return payload

    def _sync(self, seq: int) -> None:
        """fsync the log through `seq`; a failure latches the store."""
        try:
            self._log.sync(seq)
        except BaseException as e:
            self._fail(e)
            raise

    def _wait_turn(self, seq: int, what: str) -> None:
        """Caller holds `_applied`: wait until `seq` is next to apply; StoreError (naming the
        `what` at `seq`) when the store failed first."""
        self._applied.wait_for(lambda: self._applied_seq == seq - 1 or self._failed is not None)
        if self._failed is not None:
            raise StoreError(f"the store failed before {what} {seq} was applied: {self._failed}")

    def _apply_batch(
        self, snap: Snapshot, view: FeatureView, seq: int, payload: pa.Table, rows: int
    ) -> None:
        """Caller holds `_applied`, `seq` is next: apply the logged batch to both stores and
        acknowledge it; a failure latches the store."""
        try:
            apply_logged(snap, self._off, view, seq, payload, True, True)
        except BaseException as e:
            self._fail(e)
            raise
        self._applied_seq = seq
        self.ingested_rows += rows
        self.ingest_batches += 1
        self._applied.notify_all()

    def _acknowledged(
        self, view: FeatureView, seq: int, table: pa.Table, hashed: HashedKeys | None
    ) -> None:
        """After `seq` is applied, outside the locks: tell the observers, release the key
        claims and, when `lock` is free, trim the log (flush, compact and close trim it too)."""
        if self.observers:
            event_ns = column_numpy(table, EVENT_TS, np.int64)
            for observer in self.observers:
                observer(view.name, event_ns)
        if hashed is not None:
            self._keys.release(view.name, seq)
        if self._log.has_inactive:
            self.trim_log(blocking=False)

    def write_record(
        self,
        build: Callable[[Snapshot, int, int], tuple[str, pa.Table]],
        apply: Callable[[Snapshot, int, pa.Table], Any],
    ) -> tuple[int, Any]:
        """Sequence, log durably and apply one record that is not an ingested batch (a delete).

        build(snapshot, seq, now_ns) -> (record name, payload) runs under the sequencing lock
        once every logged batch is applied, so it sees the stores as of the record's seq;
        `now_ns` is the record's created stamp (never below an earlier stamp). apply(snapshot, seq,
        payload) runs in seq order. Returns (seq, what apply returned)."""
        with self.lock:
            self.quiesce()
            snap = self._snapshot()
            seq = self._next_seq
            now = max(time.time_ns(), self._last_created)
            name, payload = build(snap, seq, now)
            self._last_created = now
            try:
                self._log.append(seq, name, payload)
            except BaseException as e:
                self._fail(e)
                raise
            self._next_seq = seq + 1
        self._sync(seq)
        with self._applied:
            self._wait_turn(seq, "record")
            try:
                result = apply(snap, seq, payload)
            except BaseException as e:
                self._fail(e)
                raise
            self._applied_seq = seq
            self._applied.notify_all()
        return seq, result

    def _stamp_created(self, table: pa.Table, missing: np.ndarray) -> pa.Table:
        """Caller holds `lock`: the ingest time where no created_timestamp was given."""
        now = max(time.time_ns(), self._last_created)
        self._last_created = now
        given = column_numpy(table, CREATED_TS, np.int64)
        created = pa.array(np.where(missing, now, given)).cast(TIMESTAMP)
        return table.set_column(table.schema.get_field_index(CREATED_TS), CREATED_TS, created)

    def _fail(self, e: BaseException) -> None:
        """A log or store write failed midway: refuse further writes until reopened."""
        log.error("feature store failed, refusing writes until it is reopened: %s", e)
        with self._applied:
            self._failed = e
            self._applied.notify_all()

    def quiesce(self) -> None:
        """Caller holds `lock`: wait until every logged batch has been applied."""
        self.check_open()
        with self._applied:
            self._applied.wait_for(
                lambda: self._applied_seq == self._next_seq - 1 or self._failed is not None
            )
        self.check_open()

    def stop(self) -> bool:
        """Caller holds `lock`: wait for the logged batches (unless failed), then refuse every
        write from now on. False when already stopped."""
        if self._closed:
            return False
        with self._applied:
            self._applied.wait_for(
                lambda: self._applied_seq == self._next_seq - 1 or self._failed is not None
            )
        self._closed = True
        return True

    def release_segments(self) -> None:
        """Caller holds `lock`: delete the log segments both stores hold durably."""
        release_segments(self._log, self._registry, self._snapshot(), self._off)

    def trim_log(self, blocking: bool = True) -> None:
        """Release log segments unless closed or failed; without `blocking`, only if `lock` is free."""
        if not self.lock.acquire(blocking=blocking):
            return
        try:
            if not self._closed and self._failed is None:
                self.release_segments()
        finally:
            self.lock.release()


def apply_logged(
    snap: Snapshot,
    off: OfflineStore,
    view: FeatureView,
    seq: int,
    payload: pa.Table,
    online: bool,
    offline: bool,
) -> None:
    """Apply one logged batch (its payload as logged, conformed to `view`) to the chosen stores."""
    if payload.num_rows == 0:
        return
    if online:
        names = ([ENTITY_KEY_FIELD] if view.hashed else []) + [f.name for f in view.features]
        snap.trees[view.name].write(
            seq,
            column_numpy(payload, KEY_COLUMN, np.uint64),
            column_numpy(payload, EVENT_TS, np.int64),
            column_numpy(payload, CREATED_TS, np.int64),
            payload.select(names),
        )
    if offline:
        off.append(snap.storage[view.name], payload.select(store_schema(view).names), seq)


def column_numpy(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    """One column as a contiguous numpy array of `dtype` (timestamps as int64 ns)."""
    col = table.column(name).combine_chunks()
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return np.ascontiguousarray(col.to_numpy(zero_copy_only=False), dtype=dtype)
