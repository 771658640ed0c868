"""The sticky table of deleted entities: per view, each deleted entity's recorded time D and
delete seq, durable in `<root>/DELETED_KEYS_FILE`, and the filter that drops late events of
deleted entities at ingest (store/deletes.py describes the delete as a whole).

An ingested event of a deleted entity whose event time is <= D is dropped and counted
(`filter_batch`); a later one starts a new history. The file is replaced atomically (temp,
fsync, rename, fsync dir) before a delete is acknowledged.
Thread-safety: `filter_batch` and `add` run under the write path's sequencing lock or its
in-order apply; `entries`, `stats` and the save take the table's own lock.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from store.batch import EVENT_TS
from store.definitions import FeatureView
from store.durable_file import replace_durably
from store.key_resolution import HashedKeys
from store.keys import canonical_keys

DELETED_KEYS_FILE = "deleted_keys.arrow"  # the sticky table — on-disk format, do not change


def idents(view: FeatureView, table: pa.Table) -> np.ndarray:
    """Canonical key texts (object array) of the entity rows of `table`."""
    return canonical_keys(
        [table.column(k).to_pylist() for k in view.join_keys], [t for _, t in view.keys]
    )


class DeletedKeys:
    """Per view: deleted entity (canonical key text) -> (recorded time D in ns, delete seq);
    durable in `<root>/DELETED_KEYS_FILE`, with the highest delete seq it holds."""

    def __init__(self, root: Path) -> None:
        self._path = root / DELETED_KEYS_FILE
        self._lock = threading.Lock()
        # Serializes the deletes of FeatureStore.delete/forget from staging to commit (held
        # outside the write path's locks; store/forget.py).
        self.delete_lock = threading.Lock()
        self._views: dict[str, dict[str, tuple[int, int]]] = {}  # GUARDED_BY(_lock) to write
        self._last_seq: dict[str, int] = {}  # GUARDED_BY(_lock): view -> last delete seq
        self._ints: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # cache for int-keyed views
        self.applied_seq = 0  # the highest delete seq held (staged or saved)
        self._saved_seq = 0  # GUARDED_BY(_lock): the applied_seq of the file on disk
        self.dropped: dict[str, int] = {}  # view -> events dropped as older than a delete
        if self._path.exists():
            table = pa.ipc.open_file(pa.memory_map(str(self._path))).read_all()
            meta = table.schema.metadata or {}
            self.applied_seq = self._saved_seq = int(meta.get(b"applied_seq", b"0"))
            for v, i, d, s in zip(
                *(table.column(c).to_pylist() for c in ("view", "ident", "del_ts", "seq")),
                strict=True,
            ):
                self._views.setdefault(v, {})[i] = (d, s)
                self._last_seq[v] = max(self._last_seq.get(v, 0), s)

    def last_delete_seq(self, view: str) -> int:
        """The seq of the view's latest delete (0: none)."""
        return self._last_seq.get(view, 0)

    def entries(self, view: str) -> dict[str, tuple[int, int]]:
        """A copy of the view's deleted entities: ident -> (D, delete seq)."""
        with self._lock:
            return dict(self._views.get(view, {}))

    def stats(self) -> dict[str, Any]:
        """{"deleted_entities": {view: n}, "late_events_dropped": {view: n}, "last_seq"}."""
        with self._lock:
            return {
                "deleted_entities": {v: len(e) for v, e in self._views.items()},
                # events of deleted entities not later than their delete, dropped at ingest
                "late_events_dropped": dict(self.dropped),
                "last_seq": self.applied_seq,
            }

    def count(self, view: str) -> int:
        return len(self._views.get(view, ()))

    def add(self, seq: int, payload: pa.Table, save: bool = True) -> None:
        """Record the entities of delete record `seq` and, with `save`, save the table (atomic,
        fsynced). The write path stages a delete without saving under its sequencing lock, so
        that batches sequenced after it are filtered, and saves it when applying it. A seq at
        or below `applied_seq` only saves what is staged."""
        if seq <= self.applied_seq:
            if save:
                with self._lock:
                    if self._saved_seq < self.applied_seq:
                        self._save()
            return
        with self._lock:
            for v, i, d in zip(
                *(payload.column(c).to_pylist() for c in ("view", "ident", "del_ts")), strict=True
            ):
                old = self._views.setdefault(v, {}).get(i)
                self._views[v][i] = (max(d, old[0]) if old else d, seq)
                self._last_seq[v] = seq
                self._ints.pop(v, None)
            self.applied_seq = seq
            if save:
                self._save()

    def _save(self) -> None:
        cols: dict[str, list] = {"view": [], "ident": [], "del_ts": [], "seq": []}
        for v, entries in self._views.items():
            for i, (d, s) in entries.items():
                cols["view"].append(v)
                cols["ident"].append(i)
                cols["del_ts"].append(d)
                cols["seq"].append(s)
        table = pa.table(
            {
                "view": pa.array(cols["view"], pa.string()),
                "ident": pa.array(cols["ident"], pa.string()),
                "del_ts": pa.array(cols["del_ts"], pa.int64()),
                "seq": pa.array(cols["seq"], pa.int64()),
            }
        ).replace_schema_metadata({"applied_seq": str(self.applied_seq)})
        self._saved_seq = self.applied_seq
        tmp = self._path.with_suffix(".tmp")
        with pa.OSFile(str(tmp), "wb") as sink:
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        replace_durably(tmp, self._path)

    def forget_view(self, view: str) -> None:
        """The view's data was dropped (forced apply): nothing of it is deleted any more."""
        with self._lock:
            if self._views.pop(view, None) is not None:
                self._last_seq.pop(view, None)
                self._ints.pop(view, None)
                self._save()

    def _deleted_at(self, view: FeatureView, table: pa.Table, hashed: HashedKeys | None) -> Any:
        """Per row of `table`, the recorded time D of its entity (INT64 min: not deleted)."""
        entries = self._views[view.name]
        lo = np.iinfo(np.int64).min
        if not view.hashed:
            cache = self._ints.get(view.name)
            if cache is None:
                ks = np.array([int(i[1:-1]) for i in entries], dtype=np.int64)
                ds = np.array([d for d, _ in entries.values()], dtype=np.int64)
                order = np.argsort(ks)
                cache = self._ints[view.name] = (ks[order], ds[order])
            ks, ds = cache
            vals = table.column(view.join_keys[0]).combine_chunks().to_numpy()
            pos = np.minimum(np.searchsorted(ks, vals), len(ks) - 1)
            return np.where(ks[pos] == vals, ds[pos], lo)
        canon = hashed.canon if hashed is not None else idents(view, table)
        return np.array([entries.get(c, (lo, 0))[0] for c in canon.tolist()], dtype=np.int64)

    def filter_batch(
        self,
        view: FeatureView,
        table: pa.Table,
        missing: np.ndarray | None,
        hashed: HashedKeys | None,
    ) -> tuple[pa.Table, np.ndarray | None, HashedKeys | None]:
        """The batch without events of deleted entities not later than their delete (counted in
        `dropped`). Caller holds the sequencing lock."""
        if not self._views.get(view.name) or table.num_rows == 0:
            return table, missing, hashed
        d = self._deleted_at(view, table, hashed)
        ev = table.column(EVENT_TS).combine_chunks().cast(pa.int64()).to_numpy()
        late = ev <= d
        if not late.any():
            return table, missing, hashed
        keep = np.flatnonzero(~late)
        self.dropped[view.name] = self.dropped.get(view.name, 0) + int(late.sum())
        if missing is not None:
            missing = missing[keep]
        if hashed is not None:
            hashed = HashedKeys(hashed.canon[keep], hashed.base[keep])
        return table.take(pa.array(keep)), missing, hashed
