"""Externally sequenced group commit: several records of one tablet logged, fsynced once, applied.

A cluster node's applier (store/external.py `ingest_group_at`) hands over what one poll made
ready for a tablet. This is the WritePath's `write_at` for a run of records: the same lock,
the same log, the same in-order apply, with one fsync for the whole run. It reaches into the
WritePath's private state on purpose: it is that class's method, kept in its own module.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from store.definitions import FeatureView
from store.errors import ValidationError
from store.key_resolution import HashedKeys
from store.write_path import WritePath


def write_group_at(
    wp: WritePath,
    writes: list[tuple[int, FeatureView | str, pa.Table]],
    refused: Callable[[int, ValidationError], tuple[str, pa.Table]],
) -> list[str | None]:
    """Externally sequenced group commit (store/external.py): log every write, fsync once,
    then apply them in order.

    writes: (seq, view, table) in increasing seq; view a FeatureView (table validated by
    convert_batch, created_timestamp on every row) or a marker record's name (table: its
    payload, applied to no store). Writes at or below the applied seq are left out. A batch
    whose keys the resolver refuses is logged as the marker `refused(seq, error)` instead.
    Returns, per write, None (applied, or left out) or the refusal's text. Nothing is
    applied, and the position does not move, before the whole group is durable; a crash
    leaves a prefix of the group in the log, which recovery replays."""
    prepared = [
        (seq, v, t, wp._keys.prepare(v, t) if isinstance(v, FeatureView) else None)
        for seq, v, t in writes
    ]
    out: list[str | None] = [None] * len(writes)
    # (feature view or None for a marker, seq, payload as logged, table, hashed keys)
    done: list[tuple[FeatureView | None, int, pa.Table, pa.Table, HashedKeys | None]] = []
    with wp.lock:
        wp.quiesce()
        snap = wp._snapshot()
        for seq, v, _, _ in prepared:
            if isinstance(v, FeatureView) and seq > wp._applied_seq:
                wp._current_snapshot(v)  # ConflictError before anything is logged
        for i, (seq, v, table, hashed) in enumerate(prepared):
            if seq <= max(wp._applied_seq, wp._next_seq - 1):
                continue
            if isinstance(v, FeatureView):
                if wp.deleted is not None:
                    table, _, hashed = wp.deleted.filter_batch(v, table, None, hashed)
                try:
                    payload = wp._append_batch(snap, v, seq, table, hashed)
                except ValidationError as e:
                    out[i] = str(e)
                    v, table = refused(seq, e)
                else:
                    done.append((v, seq, payload, table, hashed))
                    continue
            try:
                wp._log.append(seq, v, table)
            except BaseException as e:
                wp._fail(e)
                raise
            wp._next_seq = seq + 1
            done.append((None, seq, table, table, None))
        if not done:
            return out
        with wp._applied:
            wp._sync(done[-1][1])
            for fv, seq, payload, table, _ in done:
                if fv is None:
                    wp._applied_seq = seq
                else:
                    wp._apply_batch(snap, fv, seq, payload, table.num_rows)
            wp._applied.notify_all()
    for fv, seq, _, table, hashed in done:
        if fv is not None:
            wp._acknowledged(fv, seq, table, hashed)
    return out
