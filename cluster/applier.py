"""Applying what a partition's staging made ready to its tablet: dispatch by kind, group commit.

`apply_ready(fs, readies)` applies `Ready` items (cluster/staging.py), in order, each at its seq:
- runs of groupable items (`data` records, and the `commit` record of an empty batch, which only
  moves the position) go to the tablet as ONE group (store.external.ingest_group_at): every
  record of the run is logged, then one fsync, then they are applied. A crash leaves a prefix
  of the run durable and the tablet's position at its end, never past a record whose data is
  not durable;
- any other kind is applied alone by its handler in `SINGLE` (`control`: a definitions change by
  `apply_at`; `delete`: entities to delete by `delete_at`, cluster/deletes.py), after the run
  before it is durable; what a handler returns is passed to `apply_ready`'s `on_result`. A new
  kind applied one at a time adds its handler to `SINGLE`.
A record every replica refuses alike (failed validation, an unknown view or kind, a refused
definitions change, undecodable bytes) moves the position by a skip marker naming why: the
result lists, per item, that reason (None: applied). Any other error (StoreError: an I/O
error, a damaged file) propagates; the tablet has then latched itself as failed.

Pure functions over the tablet; called by the node's applier thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from cluster.control import ControlError, decode_control
from cluster.deletes import DELETE, apply_delete_records
from cluster.record import COMMIT, CONTROL, DATA
from cluster.staging import Ready
from store import DefinitionError, FeatureStore, NotFoundError, ValidationError
from store.external import ingest_group_at

# Refused alike by every replica (deterministic): the position moves past the record.
REFUSED = (ValidationError, DefinitionError, NotFoundError, ControlError, pa.ArrowInvalid)

GroupItem = tuple[int, str | None, Any]  # (seq, view, table) or (seq, None, skip reason)


def _apply_control(fs: FeatureStore, ready: Ready) -> None:
    if len(ready.records) != 1:
        raise ControlError("a control record in a batch of several records")
    change = decode_control(ready.records[0].value)
    fs.apply_at(ready.seq, change.definitions, change.force)


def _apply_delete(fs: FeatureStore, ready: Ready) -> object:
    return apply_delete_records(fs, ready.seq, ready.records)


# kind -> handler applying one Ready at its seq (raising one of REFUSED to have it skipped)
SINGLE: dict[str, Callable[[FeatureStore, Ready], object]] = {
    CONTROL: _apply_control,
    DELETE: _apply_delete,
}


def apply_ready(
    fs: FeatureStore,
    readies: list[Ready],
    on_result: Callable[[Ready, object], None] | None = None,
) -> list[str | None]:
    """Apply `readies` (increasing seqs) to `fs`; per item, None or why it was refused.
    on_result(ready, result): called with what a `SINGLE` handler returned, once applied."""
    out: list[str | None] = [None] * len(readies)
    group: list[GroupItem] = []
    where: list[int] = []  # index in `readies` of each group item

    def flush() -> None:
        for i, why in zip(where, ingest_group_at(fs, group), strict=True):
            out[i] = out[i] or why
        group.clear()
        where.clear()

    for i, ready in enumerate(readies):
        item, refusal = _group_item(ready)
        if item is not None:
            out[i] = refusal
            group.append(item)
            where.append(i)
            continue
        flush()
        out[i] = _apply_single(fs, ready, on_result)
    flush()
    return out


def _group_item(ready: Ready) -> tuple[GroupItem | None, str | None]:
    """The group item of a groupable Ready and its refusal, if refused; (None, None) for a
    kind applied alone."""
    seq = ready.seq
    if ready.kind in SINGLE and all(x.kind == ready.kind for x in ready.records):
        return None, None
    try:
        if any(x.view != ready.view or x.kind != ready.kind for x in ready.records):
            raise ControlError("a batch mixes views or kinds in one partition")
        if ready.kind == DATA:
            return (seq, ready.view, ready.table()), None
        if ready.kind == COMMIT:
            return (seq, None, "commit record of an empty batch"), None
        raise ControlError(f"record of unknown kind {ready.kind!r}")
    except REFUSED as e:
        why = f"offset {seq - 1}: {type(e).__name__}: {e}"
        return (seq, None, why), why


def _apply_single(
    fs: FeatureStore, ready: Ready, on_result: Callable[[Ready, object], None] | None
) -> str | None:
    try:
        result = SINGLE[ready.kind](fs, ready)
    except REFUSED as e:
        why = f"offset {ready.seq - 1}: {type(e).__name__}: {e}"
        fs.skip_at(ready.seq, why[:1000])
        return why
    if on_result is not None:
        on_result(ready, result)
    return None
