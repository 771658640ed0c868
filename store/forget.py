"""The FeatureStore's delete and forget operations, the purge that `compact` forces, the refusal
of exports pinned before a delete, and the audit of deleted entities (record and apply:
store/deletes.py).

- `delete(view, entities)` / `forget(entity, keys)`: one delete record (one seq) through the
  write path; durable (log fsynced, sticky table saved, offline files rewritten) and applied to
  both stores when they return. The offline rewrite is staged before the record is sequenced
  (OfflineStore.prepare_delete), so that ingests go on while it runs; deletes take turns
  (`DeletedKeys.delete_lock`) from staging to commit.
- `purge()`: make every delete reach the disk for good: flush both stores, compact every tree
  fully (tombstones reach the deepest level and go, with every older version), rotate the
  commit log and release its segments (both stores are durable past the delete).
- `check_as_of(views, as_of_seq)`: an export pinned at a seq before a delete of one of its views
  is refused, since reproducing it would bring deleted data back.
Thread-safety: as FeatureStore's methods that call these (the write path serializes deletes).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from offline import OfflineStore
from online import LSMTree, TreeOptions
from store.definitions import Definitions, FeatureView
from store.deletes import (
    DeletedKeys,
    apply_delete,
    build_record,
    entity_table,
    idents,
)
from store.errors import StoreError, ValidationError
from store.key_resolution import KeyResolver
from store.keys import ENTITY_KEY_FIELD, bucket_keys, int_to_key, probe_keys
from store.online_read import entity_lookup
from store.snapshot import Snapshot
from store.write_path import WritePath


class ExportBeforeDeleteError(ValidationError):
    """An export pinned (as_of_seq) before a delete of one of its views."""


def _unknown(kind: str, name: str, known: Iterable[str]) -> ValidationError:
    return ValidationError(f"unknown {kind} {name!r}; known: {sorted(known)}")


def delete(
    writes: WritePath,
    off: OfflineStore,
    sticky: DeletedKeys,
    keys: KeyResolver,
    snap: Snapshot,
    view: str,
    entities: Mapping[str, Sequence[Any]],
) -> dict[str, Any]:
    """FeatureStore.delete: {"seq", "deleted"}."""
    writes.check_open()
    fv = snap.view(view)  # UnknownViewError names it
    targets = {view: entity_table(fv, entities)}
    seq, per_view = _write(writes, off, sticky, keys, targets, snap.storage)
    return {"seq": seq, "deleted": per_view.get(view, 0)}


def forget(
    writes: WritePath,
    off: OfflineStore,
    sticky: DeletedKeys,
    keys: KeyResolver,
    snap: Snapshot,
    entity: str,
    values: Sequence[Any],
) -> dict[str, Any]:
    """FeatureStore.forget: {"seq", "deleted", "views": {view: entities deleted}}."""
    writes.check_open()
    jks, cols, views = entity_keys(snap.defs, entity, values)
    targets: dict[str, pa.Table] = {}
    for fv in views:
        own = entity_table(narrow_view(fv, jks), cols)
        if set(fv.join_keys) == set(jks):
            targets[fv.name] = own.select(fv.join_keys)
        else:
            targets[fv.name] = _composite(off, snap.storage[fv.name], fv, own)
    seq, per_view = _write(writes, off, sticky, keys, targets, snap.storage)
    return {"seq": seq, "deleted": sum(per_view.values()), "views": per_view}


def entity_keys(
    defs: Definitions, entity: str, values: Sequence[Any]
) -> tuple[list[str], dict[str, list[Any]], list[FeatureView]]:
    """Check a forget's keys: (the entity's join keys, the given key values by join key, the
    feature views keyed by the entity, composite keys included). values: plain values for a
    one-key entity, else lists/tuples in join key order or {join key: value} mappings. Raises
    ValidationError naming the entity and the key's position."""
    ent = defs.entities.get(entity)
    if ent is None:
        raise _unknown("entity", entity, defs.entities)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValidationError(f"entity {entity!r}: keys must be a non-empty list of key values")
    jks = list(ent.join_keys)
    cols: dict[str, list[Any]] = {k: [] for k in jks}
    for i, v in enumerate(values):
        if isinstance(v, Mapping):
            if set(v) != set(jks):
                raise ValidationError(f"entity {entity!r}: key {i} must name {jks}, got {v!r}")
            row = [v[k] for k in jks]
        elif isinstance(v, (list, tuple)):
            row = list(v)
        else:
            row = [v]
        if len(row) != len(jks):
            raise ValidationError(f"entity {entity!r}: key {i} must have {len(jks)} values")
        for k, x in zip(jks, row, strict=True):
            cols[k].append(x)
    views = [fv for fv in defs.feature_views.values() if entity in fv.entities]
    if not views:
        raise ValidationError(f"entity {entity!r}: no feature view is keyed by it")
    return jks, cols, views


def narrow_view(fv: FeatureView, jks: list[str]) -> FeatureView:
    """`fv` as if keyed by the entity's join keys only (to type the given values)."""
    return replace(fv, keys=tuple((k, t) for k, t in fv.keys if k in jks))


def _composite(off: OfflineStore, storage: str, fv: FeatureView, own: pa.Table) -> pa.Table:
    """The full keys of composite view `fv` whose entity part is in `own` (from the offline
    store, which holds every entity ever ingested)."""
    reader = off.scan(storage, columns=fv.join_keys)
    parts = []
    for batch in reader:
        t = pa.Table.from_batches([batch])
        mask = None
        for k in own.column_names:
            m = pc.is_in(t.column(k), value_set=own.column(k))
            mask = m if mask is None else pc.and_(mask, m)
        parts.append(t.filter(mask))
    if not parts:
        return pa.table(
            {k: pa.array([], pa.int64() if t == "int64" else pa.string()) for k, t in fv.keys}
        )
    table = pa.concat_tables(parts)
    if own.num_columns > 1:  # is_in per column over-selects: keep exact tuples only
        want = set(zip(*(own.column(k).to_pylist() for k in own.column_names), strict=True))
        got = zip(*(table.column(k).to_pylist() for k in own.column_names), strict=True)
        table = table.filter(pa.array([g in want for g in got]))
    return table.group_by(fv.join_keys).aggregate([]).select(fv.join_keys)


def _write(
    writes: WritePath,
    off: OfflineStore,
    sticky: DeletedKeys,
    keys: KeyResolver,
    targets: dict[str, pa.Table],
    storage: Mapping[str, str],
) -> tuple[int, dict[str, int]]:
    """Stage the offline rewrites of `targets` ({view: entity table}; `storage`: view ->
    storage name), then sequence, log and apply the delete record."""

    def build(snap: Snapshot, seq: int, now: int) -> tuple[str, pa.Table]:
        for name in targets:
            if name not in snap.defs.feature_views:
                raise StoreError(f"feature view {name!r} was dropped; nothing was deleted")
        name, payload = build_record(snap, keys.hash_bits, targets, now)
        # staged now, under the sequencing lock: every batch sequenced after this delete is
        # filtered by it (saved when the delete is applied)
        sticky.add(seq, payload, save=False)
        return name, payload

    def apply(snap: Snapshot, seq: int, payload: pa.Table) -> dict[str, int]:
        return apply_delete(snap, off, sticky, seq, payload, staged=staged)

    # One delete at a time stages and commits: a second one staged meanwhile would find the
    # files it rewrote replaced by the first's commit, and redo them at its own.
    staged: dict[str, Any] = {}
    with sticky.delete_lock:
        try:
            for n, t in targets.items():
                staged[n] = off.prepare_delete(storage[n], t)
            seq, per_view = writes.write_record(build, apply)
        finally:
            for stage in staged.values():
                off.discard_delete(stage)  # no-op for those committed
    return seq, per_view


def purge(writes: WritePath, off: OfflineStore, snap: Snapshot, log_rotate: Any) -> None:
    """Flush both stores, compact every tree fully, rotate and trim the commit log."""
    for tree in snap.trees.values():
        tree.compact(full=True)
    off.flush()
    with writes.lock:
        log_rotate()
    writes.trim_log()


def views_of(snap: Snapshot, features: str | Sequence[str]) -> list[str]:
    """The views a read of `features` (refs or a feature service) touches."""
    try:
        return [r.view.name for r in snap.plan(features, False).reads]
    except StoreError:
        return []  # the read itself reports the bad reference


def tree_options(view: FeatureView, options: TreeOptions) -> TreeOptions:
    """The options of `view`'s tree: compaction of its deepest level purges rows older than
    the view's ttl (they read OUTSIDE_MAX_AGE already), unless the caller set a purge ttl.
    A hashed view's expired rows keep their key text (their slot: a freed slot would cut the
    probe chains passing it) and lose every feature."""
    if options.purge_ttl_ns or not view.ttl_ns:
        return options
    keep = ENTITY_KEY_FIELD if view.hashed else ""
    return replace(options, purge_ttl_ns=view.ttl_ns, purge_keep_field=keep)


def ttl_floor(view: FeatureView, tree: LSMTree, floor: int | None) -> int | None:
    """The audit's event-time floor with the ttl purge: online rows older than now - ttl may be
    purged, so the audit leaves rows that old out on both sides."""
    ttl = tree.options.purge_ttl_ns
    if not ttl:
        return floor
    purge = time.time_ns() - ttl
    return purge if floor is None else max(floor, purge)


def check_as_of(sticky: DeletedKeys, views: Iterable[str], as_of_seq: int | None) -> None:
    """Refuse an export pinned before a delete of one of `views`."""
    if as_of_seq is None:
        return
    for v in views:
        last = sticky.last_delete_seq(v)
        if last > as_of_seq:
            raise ExportBeforeDeleteError(
                f"as_of_seq={as_of_seq} is before a delete of view {v!r} at seq {last}: that "
                "view lost data since, and reproducing the export would bring deleted entities "
                f"back; export at as_of_seq >= {last} (or without as_of_seq)",
                view=v,
            )


def audit_deleted(
    view: FeatureView,
    off: OfflineStore,
    storage: str,
    snap: Snapshot,
    sticky: DeletedKeys,
    hash_bits: int,
) -> int:
    """Rows, in either store, of entities of `view` deleted and not ingested again since: 0
    when deletes were applied everywhere."""
    entries = sticky.entries(view.name)
    if not entries:
        return 0
    canon = np.array(list(entries), dtype=object)
    seqs = np.array([s for _, s in entries.values()], dtype=np.int64)
    tree = snap.trees[view.name]
    if view.hashed:
        keys, found = probe_keys(canon, bucket_keys(canon, hash_bits), entity_lookup(tree))
    else:
        keys = int_to_key(np.array([int(c[1:-1]) for c in canon], dtype=np.int64))
        found = np.ones(len(keys), dtype=bool)
    res = tree.get_many(keys)
    bad = int((found & res.found & (res.seq <= seqs)).sum())
    by_ident = dict(zip(canon.tolist(), seqs.tolist(), strict=True))
    if not view.hashed:
        ints = np.array([int(c[1:-1]) for c in canon], dtype=np.int64)
        order = np.argsort(ints)
        ints, iseq = ints[order], seqs[order]
    for batch in off.scan(storage, columns=[*view.join_keys, "_seq"]):
        rseq = batch.column(len(view.join_keys)).to_numpy()
        if not view.hashed:  # vectorized: int keys
            vals = batch.column(0).to_numpy()
            pos = np.minimum(np.searchsorted(ints, vals), len(ints) - 1)
            bad += int(((ints[pos] == vals) & (rseq <= iseq[pos])).sum())
            continue
        ids = idents(view, pa.Table.from_batches([batch]))
        bad += sum(
            1
            for c, q in zip(ids.tolist(), rseq.tolist(), strict=True)
            if c in by_ident and q <= by_ident[c]
        )
    return bad
