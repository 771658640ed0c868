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
- offline: OfflineStore.delete rewrites the files holding the entities, durable at once. The
  heavy part runs before the record is sequenced (OfflineStore.prepare_delete: the rewrites,
  unpublished, off the writer's path); applying the record then only swaps them in, with the
  files flushed since, in one manifest write (offline/delete_stage.py);
- sticky: `DeletedKeys` (store/deleted_keys.py) records (view, ident) -> (D, seq) in
  `<root>/DELETED_KEYS_FILE`, written atomically before the delete is acknowledged. An ingested event of a deleted entity
  whose event time is <= D is dropped and counted (`filter_batch`); a later one starts a new
  history.
Thread-safety: `DeletedKeys.filter_batch` and `add` run under the write path's sequencing lock
or its in-order apply; reads of `last_delete_seq` take the table's own lock.

The internal API (stable: FeatureStore.delete/forget and externally sequenced deletes use it):
1. `entity_table(view, {join_key: [values]})`: the distinct entities, typed;
2. optionally, before sequencing: `staged[view] = off.prepare_delete(storage, entities)`, then
   `off.discard_delete(staged[view])` after step 4 whatever happened (no-op once committed);
3. under the sequencing lock with every logged batch applied:
   `name, payload = build_record(snap, hash_bits, {view: entities}, time_ns)`, log it at a seq;
4. in seq order: `apply_delete(snap, off, sticky, seq, payload, staged=staged)` applies it to
   both stores and the sticky table; without `staged` the offline rewrite happens inside it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from offline import OfflineStore
from store.definitions import FeatureView
from store.deleted_keys import DELETED_KEYS_FILE, DeletedKeys, idents
from store.errors import ValidationError
from store.keys import ENTITY_KEY_FIELD, bucket_keys, int_to_key, probe_keys
from store.online_read import entity_lookup
from store.snapshot import Snapshot

__all__ = [  # DeletedKeys, DELETED_KEYS_FILE and idents live in store/deleted_keys.py
    "DELETED_ENTITY",
    "DELETED_KEYS_FILE",
    "DELETE_RECORD",
    "DeletedKeys",
    "apply_delete",
    "build_record",
    "entity_table",
    "idents",
    "is_delete_record",
    "offline_entities",
    "record_name",
    "record_views",
    "record_views_of",
    "view_rows",
]

DELETE_RECORD = "\x00delete"  # commit-log record name prefix — on-disk format, do not change
DELETED_ENTITY = "\x00deleted"  # key text of a hashed view's tombstone — do not change
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
    staged: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Apply a delete record to the trees, the offline store and the sticky table (those
    named; None: all). Returns {view: entities that either store held}. `staged`: {view:
    OfflineStore.prepare_delete of the view's rows of `payload` (`offline_entities`)}, staged
    before the record was sequenced; the views without one are rewritten here, in full."""
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
            stage = staged.get(name) if staged is not None else None
            held = held | off.delete(snap.storage[name], ent, seq, stage)
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


def offline_entities(view: FeatureView, payload: pa.Table) -> pa.Table:
    """The entities of `view` in delete record `payload`, as OfflineStore.delete takes them."""
    return _entities(view, view_rows(payload, view.name))


def _entities(view: FeatureView, rows: pa.Table) -> pa.Table:
    values = [json.loads(s) for s in rows.column("keys").to_pylist()]
    cols = {}
    for i, (k, dtype) in enumerate(view.keys):
        cols[k] = pa.array([v[i] for v in values], pa.int64() if dtype == "int64" else pa.string())
    return pa.table(cols) if values else pa.table({k: pa.array([], pa.int64()) for k in cols})
