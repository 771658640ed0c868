"""Deleting entities: the delete record, its application to both stores, and the sticky table.

A delete (FeatureStore.delete / forget) is one commit-log record, sequenced, fsynced and applied
in seq order like an ingested batch. Its name is DELETE_RECORD + the views it touches (no view
name starts with NUL, so older logs read as before), its payload one table with a row per
(view, entity): `view`, `ident` (the canonical key text, store/keys.py), `keys` (the join-key
values as JSON), `key` (the online key, when the tree holds the entity), `online`, `del_ts`
(the recorded time D below) and `tomb_ts`, `tomb_created` (the tombstone's times).

The delete's time T is its ingest time (the write path's created stamp). Per entity, the
recorded time is D = max(T, the newest event time the view held for it). Online the tombstone
carries the (event, created) times of the entity's visible version and the delete's later seq,
so that it is the entity's latest version without raising the tree's newest event time (which
would cost later batches the tree's no-lookup write path); then
- online: int-keyed views get tombstones without fields (reads: NOT_FOUND); hashed views get
  tombstones that keep the slot with DELETED_ENTITY as key text, so no other entity claims the
  slot while older versions may remain below it (reads: NOT_FOUND, the key text differs);
- offline: OfflineStore.delete rewrites the files holding the entities, durable at once;
- sticky: `DeletedKeys` records (view, ident) -> (D, seq) in `<root>/DELETED_KEYS_FILE`,
  written atomically before the delete is acknowledged. An ingested event of a deleted entity
  whose event time is <= D is dropped and counted (`filter_batch`); a later one starts a new
  history.
Thread-safety: `DeletedKeys.filter_batch` and `add` run under the write path's sequencing lock
or its in-order apply; reads of `last_delete_seq` take the table's own lock.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from offline import OfflineStore
from store.batch import EVENT_TS
from store.definitions import FeatureView
from store.errors import ValidationError
from store.key_resolution import HashedKeys
from store.keys import ENTITY_KEY_FIELD, bucket_keys, canonical_keys, int_to_key, probe_keys
from store.online_read import entity_lookup
from store.snapshot import Snapshot

DELETE_RECORD = "\x00delete"  # commit-log record name prefix — on-disk format, do not change
DELETED_ENTITY = "\x00deleted"  # key text of a hashed view's tombstone — do not change
DELETED_KEYS_FILE = "deleted_keys.arrow"  # the sticky table — on-disk format, do not change
_SCHEMA = pa.schema(
    [
        ("view", pa.string()),
        ("ident", pa.string()),
        ("keys", pa.string()),
        ("key", pa.uint64()),
        ("online", pa.bool_()),
        ("del_ts", pa.int64()),
        ("tomb_ts", pa.int64()),
        ("tomb_created", pa.int64()),
    ]
)


def record_name(views: Sequence[str]) -> str:
    return DELETE_RECORD + "".join("\x00" + v for v in views)


def is_delete_record(name: str) -> bool:
    return name.startswith(DELETE_RECORD)


def record_views(name: str) -> list[str]:
    return name[len(DELETE_RECORD) :].split("\x00")[1:]


# ------------------------------------------------------------------------- requests


def _typed(dtype: str, values: Sequence[Any], view: str, key: str) -> list[Any]:
    out: list[Any] = []
    for i, v in enumerate(values):
        if v is None or isinstance(v, bool):
            raise ValidationError(
                f"view {view!r}: key {key!r} has no usable value at position {i} ({v!r})",
                view=view,
                column=key,
                row=i,
            )
        if dtype == "int64":
            try:
                out.append(int(v))
            except (TypeError, ValueError):
                raise ValidationError(
                    f"view {view!r}: key {key!r} must be int64, got {v!r} at position {i}",
                    view=view,
                    column=key,
                    row=i,
                ) from None
        else:
            out.append(str(v))
    return out


def entity_table(view: FeatureView, entities: Mapping[str, Sequence[Any]]) -> pa.Table:
    """The distinct entities {join_key: [values]} of `view` as a typed table of its join keys."""
    if not isinstance(entities, Mapping) or not entities:
        raise ValidationError(
            f"view {view.name!r}: entities must be a non-empty mapping of join key -> values "
            f"(join keys: {view.join_keys})",
            view=view.name,
        )
    unknown = sorted(set(entities) - set(view.join_keys))
    missing = [k for k in view.join_keys if k not in entities]
    if unknown or missing:
        raise ValidationError(
            f"view {view.name!r} is keyed by {view.join_keys}: unknown join keys {unknown}, "
            f"missing {missing}",
            view=view.name,
        )
    cols = {}
    n = None
    for k, dtype in view.keys:
        vals = entities[k]
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence):
            vals = [vals]
        if n is not None and len(vals) != n:
            raise ValidationError(
                f"view {view.name!r}: join keys have different lengths", view=view.name
            )
        n = len(vals)
        typed = _typed(dtype, vals, view.name, k)
        cols[k] = pa.array(typed, pa.int64() if dtype == "int64" else pa.string())
    table = pa.table(cols)
    return table.group_by(view.join_keys).aggregate([]).select(view.join_keys)


def idents(view: FeatureView, table: pa.Table) -> np.ndarray:
    """Canonical key texts (object array) of the entity rows of `table`."""
    return canonical_keys(
        [table.column(k).to_pylist() for k in view.join_keys], [t for _, t in view.keys]
    )


# ------------------------------------------------------------------------- the record


def build_record(
    snap: Snapshot, hash_bits: int, targets: Mapping[str, pa.Table], now: int
) -> tuple[str, pa.Table]:
    """The record of deleting `targets` ({view: entity table}) at time `now` (ns), reading the
    visible versions of the trees. Caller holds the sequencing lock with every logged batch
    applied."""
    parts = []
    for name, ent in targets.items():
        view = snap.view(name)
        tree = snap.trees[name]
        canon = idents(view, ent)
        if view.hashed:
            base = bucket_keys(canon, hash_bits)
            keys, found = probe_keys(canon, base, entity_lookup(tree))
        else:
            keys = int_to_key(ent.column(view.join_keys[0]).to_numpy())
            found = np.ones(len(keys), dtype=bool)
        res = tree.get_many(keys)
        found &= res.found
        ev = np.where(found, np.maximum(res.event_ts, now), now)
        rows = ent.to_pylist()
        parts.append(
            pa.table(
                {
                    "view": pa.array([name] * len(canon), pa.string()),
                    "ident": pa.array(canon.tolist(), pa.string()),
                    "keys": pa.array([json.dumps([r[k] for k in view.join_keys]) for r in rows]),
                    "key": pa.array(np.where(found, keys, 0).astype(np.uint64)),
                    "online": pa.array(found),
                    "del_ts": pa.array(ev.astype(np.int64)),
                    "tomb_ts": pa.array(np.where(found, res.event_ts, now).astype(np.int64)),
                    "tomb_created": pa.array(np.where(found, res.created_ts, now).astype(np.int64)),
                },
                schema=_SCHEMA,
            )
        )
    return record_name(list(targets)), pa.concat_tables(parts)


def view_rows(payload: pa.Table, name: str) -> pa.Table:
    import pyarrow.compute as pc

    return payload.filter(pc.equal(payload.column("view"), name))


def apply_delete(
    snap: Snapshot,
    off: OfflineStore,
    sticky: DeletedKeys,
    seq: int,
    payload: pa.Table,
    online: set[str] | None = None,
    offline: set[str] | None = None,
) -> dict[str, int]:
    """Apply a delete record to the trees, the offline store and the sticky table (those
    named; None: all). Returns {view: entities that either store held}."""
    sticky.add(seq, payload)  # first: a concurrent log trim may follow the stores' durability
    out = {}
    for name in record_views_of(payload):
        if name not in snap.defs.feature_views:
            continue  # dropped since
        view = snap.view(name)
        rows = view_rows(payload, name)
        held = np.asarray(rows.column("online").to_numpy(zero_copy_only=False), dtype=bool)
        if online is None or name in online:
            _delete_online(snap, view, seq, rows, held)
        if offline is None or name in offline:
            ent = _entities(view, rows)
            held = held | off.delete(snap.storage[name], ent, seq)
        out[name] = int(held.sum())
    return out


def record_views_of(payload: pa.Table) -> list[str]:
    return list(dict.fromkeys(payload.column("view").to_pylist()))


def _delete_online(
    snap: Snapshot, view: FeatureView, seq: int, rows: pa.Table, held: np.ndarray
) -> None:
    tree = snap.trees[view.name]
    idx = pa.array(np.flatnonzero(held))
    keys = rows.column("key").take(idx).to_numpy()
    ev = rows.column("tomb_ts").take(idx).to_numpy()
    cr = rows.column("tomb_created").take(idx).to_numpy()
    feats = None
    if view.hashed:
        n = len(keys)
        cols = {f.name: pa.nulls(n, f.arrow_type) for f in tree.fields}
        cols[ENTITY_KEY_FIELD] = pa.array([DELETED_ENTITY] * n, pa.large_string())
        feats = pa.table(cols)
    tree.delete(seq, keys, ev, cr, feats)


def _entities(view: FeatureView, rows: pa.Table) -> pa.Table:
    values = [json.loads(s) for s in rows.column("keys").to_pylist()]
    cols = {}
    for i, (k, dtype) in enumerate(view.keys):
        cols[k] = pa.array([v[i] for v in values], pa.int64() if dtype == "int64" else pa.string())
    return pa.table(cols) if values else pa.table({k: pa.array([], pa.int64()) for k in cols})


# ------------------------------------------------------------------------- sticky table


class DeletedKeys:
    """Per view: deleted entity (canonical key text) -> (recorded time D in ns, delete seq);
    durable in `<root>/DELETED_KEYS_FILE`, with the highest delete seq it holds."""

    def __init__(self, root: Path) -> None:
        self._path = root / DELETED_KEYS_FILE
        self._lock = threading.Lock()
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
        os.replace(tmp, self._path)
        fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

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
