"""Externally sequenced roots: a root whose seqs come from outside (a partition of a replicated
log) instead of from its own ingests.

A root becomes externally sequenced at its first `FeatureStore.ingest_at`, `apply_at` or
`skip_at`: the file EXTERNAL_MARKER is created (fsynced, with its directory) before anything is
logged at an external seq. From then on the root refuses plain `ingest`/`push` (their seqs
would collide with the external ones), and a root that already holds batches of its own
ingests refuses to become external. The position of an external root is its `last_seq`: the
commit log keeps every applied seq, gaps allowed, and position markers (CONTROL_VIEW records)
for what changes no view (a definitions change, a refused record), so the position survives a
crash exactly.

`ingest_group_at` applies several records with one fsync (group commit): all are logged, the
log is fsynced once, then they are applied in order; a crash leaves a durable prefix of the
group, replayed on open.

Batches applied at an external seq must carry `created_timestamp` on every row: a stamp taken
from the applying process's clock would differ between replicas of the same log.

Thread-safety: `Sequencing.claim` is called under the store's admin or sequencing discipline by
one applier; `external` is a bool read without a lock.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from store.batch import convert_batch
from store.durable_file import fsync_dir
from store.errors import NotFoundError, StoreError, ValidationError
from store.group_write import write_group_at

if TYPE_CHECKING:
    from store.feature_store import FeatureStore

EXTERNAL_MARKER = "EXTERNAL_SEQ"  # file in the root: on-disk format, do not change
# Commit-log view name of a position marker; no feature view can have it (names start with a
# letter). On-disk format, do not change.
CONTROL_VIEW = "~position"


class Sequencing:
    """Whether a root is sequenced by its own ingests or from outside, and the switch to outside."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self.external = (root / EXTERNAL_MARKER).exists()

    def claim(self, last_seq: int) -> None:
        """Make the root externally sequenced (idempotent). last_seq: the root's applied seq.

        Raises StoreError if the root already holds batches sequenced by its own ingests."""
        if self.external:
            return
        if last_seq > 0:
            raise StoreError(
                f"the store at {str(self._root)!r} holds batches sequenced by its own ingests "
                f"(up to seq {last_seq}); an externally sequenced apply needs a new root"
            )
        path = self._root / EXTERNAL_MARKER
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self._root)
        self.external = True

    def check_internal(self) -> None:
        """Raise StoreError if the root is externally sequenced (plain ingest is refused)."""
        if self.external:
            raise StoreError(
                f"the store at {str(self._root)!r} is externally sequenced (a cluster tablet): "
                "write through the cluster's log (ingest_at), not ingest or push"
            )


def check_seq(seq: object) -> int:
    """seq must be a positive int (an external position: a Kafka offset + 1)."""
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValidationError(f"an external seq must be a positive int, got {seq!r}")
    return seq


def require_created(view: str, missing_created: np.ndarray | None) -> None:
    """Refuse a batch with rows lacking created_timestamp (replicas would stamp differently)."""
    if missing_created is not None and bool(missing_created.any()):
        row = int(np.flatnonzero(missing_created)[0])
        raise ValidationError(
            f"view {view!r}: row {row} has no created_timestamp; a batch applied at an external "
            "seq must carry it on every row (the router stamps it)",
            view=view,
            column="created_timestamp",
            row=row,
        )


def marker_table(note: str) -> pa.Table:
    """The payload of a position marker: one row naming why the position moved."""
    return pa.table({"note": pa.array([note], pa.string())})


# ---- FeatureStore's externally sequenced writes (its methods of the same names delegate here)


def ingest_at(fs: FeatureStore, seq: int, view: str, data: Any) -> bool:
    """Apply a batch at the external position `seq` (a cluster tablet: Kafka offset + 1).

    Idempotent and gap-tolerant: False, writing nothing, when `seq` is at or below
    `last_seq`; else the batch is logged with `seq`, fsynced, applied, and True returned.
    Every row must carry created_timestamp. A bad batch raises ValidationError with nothing
    written and the position unchanged (see skip_at). See store/external.py."""
    seq = check_seq(seq)
    fs._writes.check_open()
    if seq <= fs._writes.applied_seq:
        return False
    fs._sequencing.claim(fs._writes.applied_seq)
    fv = fs._snap.view(view)
    table, missing_created = convert_batch(fv, data)
    require_created(view, missing_created)
    return fs._writes.write_at(seq, fv, table)


def apply_at(
    fs: FeatureStore, seq: int, definitions: str | Path | Mapping[str, Any], force: bool = False
) -> dict[str, Any] | None:
    """Apply definitions at the external position `seq`; None (nothing done) when `seq` is
    at or below `last_seq`, else what changed, as `apply` returns it.

    The change is applied first, then the position marker is logged: a crash between the
    two re-applies identical definitions, which changes nothing. A refused change raises
    DefinitionError with the position unchanged (see skip_at)."""
    seq = check_seq(seq)
    with fs._admin:
        fs._writes.check_open()
        if seq <= fs._writes.applied_seq:
            return None
        fs._sequencing.claim(fs._writes.applied_seq)
        changes = fs.apply(definitions, force)
        fs._writes.mark_at(seq, CONTROL_VIEW, marker_table("definitions"))
        return changes


def skip_at(fs: FeatureStore, seq: int, reason: str) -> bool:
    """Move the external position to `seq` without applying anything: for a record every
    replica refuses alike (a batch that fails validation, a refused definitions change).
    False when `seq` is at or below `last_seq`. `reason` is kept in the commit log."""
    seq = check_seq(seq)
    fs._writes.check_open()
    if seq <= fs._writes.applied_seq:
        return False
    fs._sequencing.claim(fs._writes.applied_seq)
    return fs._writes.mark_at(seq, CONTROL_VIEW, marker_table(reason))


def delete_at(
    fs: FeatureStore,
    seq: int,
    targets: Mapping[str, Mapping[str, Any]],
    time_ns: int,
) -> dict[str, int] | None:
    """Apply a delete of `targets` ({view: {join key: [values]}}) at the external position
    `seq`, the delete's time `time_ns` given by the log's writer; {view: entities deleted}, or
    None when `seq` is at or below `last_seq`. See store/delete_at.py."""
    from store.delete_at import delete_at as apply

    return apply(fs, seq, targets, time_ns)


def ingest_group_at(
    fs: FeatureStore, items: Sequence[tuple[int, str | None, Any]]
) -> list[str | None]:
    """Apply several externally sequenced records with ONE fsync (group commit): the node's
    applier hands over what one poll made ready for a tablet.

    items: (seq, view, data) in increasing seq, a batch as `ingest_at` takes it; or
    (seq, None, reason): a skip (as `skip_at`). Returns, per item, None (applied, or at or below
    `last_seq`: nothing done) or the refusal's text: a batch every replica refuses alike (unknown
    view, failed validation, no free key slot) is logged as a skip marker naming why, in its
    place. Every record of the group is in the commit log and fsynced before any is applied or
    the position moves; a crash leaves a prefix of the group durable, replayed on open, so the
    position never claims a record whose data is not durable."""
    fs._writes.check_open()
    last = 0
    for seq, _, _ in items:
        if check_seq(seq) <= last:
            raise ValidationError(f"group seqs must increase: {seq} after {last}")
        last = seq
    if not items or last <= fs._writes.applied_seq:
        return [None] * len(items)
    fs._sequencing.claim(fs._writes.applied_seq)
    refusals: list[str | None] = [None] * len(items)
    writes: list[tuple[int, Any, pa.Table]] = []
    for i, (seq, view, data) in enumerate(items):
        if seq <= fs._writes.applied_seq:
            continue
        if view is None:
            writes.append((seq, CONTROL_VIEW, marker_table(str(data)[:1000])))
            continue
        try:
            fv = fs._snap.view(view)
            table, missing_created = convert_batch(fv, data)
            require_created(view, missing_created)
        except (ValidationError, NotFoundError, pa.ArrowInvalid) as e:
            refusals[i] = text = f"offset {seq - 1}: {type(e).__name__}: {e}"
            writes.append((seq, CONTROL_VIEW, marker_table(text[:1000])))
            continue
        writes.append((seq, fv, table))

    def refused(seq: int, e: ValidationError) -> tuple[str, pa.Table]:
        return CONTROL_VIEW, marker_table(f"offset {seq - 1}: {type(e).__name__}: {e}"[:1000])

    index = {seq: i for i, (seq, _, _) in enumerate(items)}
    done = write_group_at(fs._writes, writes, refused)
    for (seq, _, _), why in zip(writes, done, strict=True):
        if why is not None:
            refusals[index[seq]] = f"offset {seq - 1}: ValidationError: {why}"
    return refusals
