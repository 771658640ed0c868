"""Externally sequenced deletes: a delete record applied at a position given from outside (a
cluster tablet applying the delete record of its partition at Kafka offset + 1).

`delete_at(fs, seq, targets, time_ns)` is the external twin of FeatureStore.delete/forget
(store/forget.py): the same record (store/deletes.py `build_record`), the same application to
both stores and to the sticky table (`apply_delete`), logged at `seq` instead of the root's own
next seq, with the delete's time `time_ns` given by the writer of the log (the router's stamp)
instead of this process's clock, so that every replica of a partition builds the identical
record from the identical state.

targets: {view: {join key: [values]}}. A view's mapping names either all its join keys (those
entities) or only some of them (every entity of the view whose key parts match, as `forget`
deletes from a view with a composite key: resolved from the view's offline history, which
holds every entity ever ingested). Views the root does not know are left out (a definitions
change may have dropped them before this tablet reached the delete); invalid keys raise
ValidationError with nothing written and the position unchanged (the caller moves it with
skip_at, as every replica refuses alike).

Thread-safety: one applier feeds an external root, in order; the whole delete holds the write
path's sequencing lock (as WritePath.write_at does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from store.deletes import apply_delete, build_record, entity_table
from store.errors import ValidationError
from store.external import CONTROL_VIEW, check_seq, marker_table
from store.forget import _composite, narrow_view

if TYPE_CHECKING:
    from store.feature_store import FeatureStore


def delete_at(
    fs: FeatureStore,
    seq: int,
    targets: Mapping[str, Mapping[str, Sequence[Any]]],
    time_ns: int,
) -> dict[str, int] | None:
    """Apply a delete of `targets` at the external position `seq` with delete time `time_ns`.

    Returns {view: entities either store held} (what `forget` answers in "views"), or None,
    writing nothing, when `seq` is at or below `last_seq`. Durable (logged and fsynced, sticky
    table saved, offline files rewritten) when it returns."""
    seq = check_seq(seq)
    if not isinstance(time_ns, int) or isinstance(time_ns, bool) or time_ns < 0:
        raise ValidationError(f"a delete's time must be a non-negative int (ns), got {time_ns!r}")
    writes = fs._writes
    writes.check_open()
    if seq <= writes.applied_seq:
        return None
    with writes.lock:
        writes.quiesce()
        if seq <= writes.applied_seq:
            return None
        snap = fs._snap
        tables = _target_tables(fs, snap, targets)
        fs._sequencing.claim(writes.applied_seq)
        if tables:
            name, payload = build_record(snap, fs._keys.hash_bits, tables, time_ns)
            return _log_and_apply(fs, seq, name, payload)
    # no view of the delete is known here (dropped before this tablet reached it): the
    # position still moves, as for every record
    writes.mark_at(seq, CONTROL_VIEW, marker_table("delete of views not defined here"))
    return {}


def _target_tables(
    fs: FeatureStore, snap: Any, targets: Mapping[str, Mapping[str, Sequence[Any]]]
) -> dict[str, pa.Table]:
    """{view: the distinct entities to delete, a typed table of its join keys}."""
    out: dict[str, pa.Table] = {}
    for name, given in targets.items():
        fv = snap.defs.feature_views.get(name)
        if fv is None:
            continue
        if not isinstance(given, Mapping) or not given:
            raise ValidationError(f"view {name!r}: a delete names join key values", view=name)
        keys = [k for k in fv.join_keys if k in given]
        unknown = sorted(set(given) - set(fv.join_keys))
        if unknown or not keys:
            raise ValidationError(
                f"view {name!r} is keyed by {fv.join_keys}: unknown join keys {unknown}",
                view=name,
            )
        if len(keys) == len(fv.join_keys):
            out[name] = entity_table(fv, given)
        else:
            own = entity_table(narrow_view(fv, keys), {k: given[k] for k in keys})
            out[name] = _composite(fs._off, snap.storage[name], fv, own)
    return out


def _log_and_apply(fs: FeatureStore, seq: int, name: str, payload: pa.Table) -> dict[str, int]:
    """Caller holds the sequencing lock with every logged batch applied: log the delete record
    at `seq`, fsync it, apply it to both stores and the sticky table. A failure after the log
    append latches the store (as any write)."""
    writes = fs._writes
    writes.append_durably(seq, name, payload)
    with writes._applied:
        try:
            result = apply_delete(fs._snap, fs._off, fs._deleted, seq, payload)
        except BaseException as e:
            writes._fail(e)
            raise
        writes._applied_seq = seq
        writes._applied.notify_all()
    return result
