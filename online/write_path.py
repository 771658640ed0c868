"""The write path of one LSMTree: `write` (a batch of latest rows) and `delete` (tombstones),
with the stall that holds writers back while flushes or L0 fall behind.

Invariant: a row enters the memtable only when it is not older than the version already visible
in the tree (`latest_rows`), which keeps the tree's first-hit lookup rule true (see tree.py).
Thread-safety: these functions take the tree's `_write_lock` around sequencing and the memtable
insert, and the tree's background condition while they stall; they read and update the tree's
fields named GUARDED_BY(_write_lock) in tree.py only under that lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from online import tombstones as tombs
from online.errors import OnlineError
from online.schema import as_keys

if TYPE_CHECKING:
    from online.tree import LSMTree

__all__ = ["write", "delete", "latest_rows", "wait_for_flushes"]


def write(
    tree: LSMTree,
    seq: int,
    keys: np.ndarray,
    event_ts: np.ndarray,
    created_ts: np.ndarray,
    features: pa.RecordBatch | pa.Table,
) -> None:
    """LSMTree.write (its docstring is the contract): check the batch's arrays, insert it."""
    tree._check_open()
    keys = as_keys(keys)
    ev = np.ascontiguousarray(event_ts, dtype=np.int64)
    cr = np.ascontiguousarray(created_ts, dtype=np.int64)
    if not (len(keys) == len(ev) == len(cr)):
        raise OnlineError(
            f"keys, event_ts and created_ts differ in length ({len(keys)}, {len(ev)}, {len(cr)})"
        )
    _insert(tree, seq, keys, ev, cr, features, False)


def delete(
    tree: LSMTree,
    seq: int,
    keys: np.ndarray,
    event_ts: np.ndarray,
    created_ts: np.ndarray,
    features: pa.RecordBatch | pa.Table | None = None,
) -> None:
    """Write tombstones of `keys` (unique) with sequence number `seq` (> every earlier seq).

    event_ts, created_ts: per key, not older than any version of the key (the caller reads
    them first), so each tombstone becomes its key's latest version. `features`: None (reads
    then report the keys as not found), or rows whose fields the tombstones keep (see
    online/tombstones.py). Compaction of the deepest level drops them."""
    tree._check_open()
    keys = as_keys(keys)
    ev = np.ascontiguousarray(event_ts, dtype=np.int64)
    cr = np.ascontiguousarray(created_ts, dtype=np.int64)
    if features is None:
        features = pa.table({f.name: pa.nulls(len(keys), f.arrow_type) for f in tree.fields})
    _insert(tree, seq, keys, ev, cr, features, True)


def _insert(
    tree: LSMTree,
    seq: int,
    keys: np.ndarray,
    ev: np.ndarray,
    cr: np.ndarray,
    features: pa.RecordBatch | pa.Table,
    tombstones: bool,
) -> None:
    """Write one checked batch (as versions, or as tombstones) into the active memtable at
    `seq`, freeze it when full, then flush or wake the background worker."""
    wait_for_flushes(tree)
    with tree._write_lock:
        tree._check_open()
        if seq <= tree._last_seq:
            raise OnlineError(f"seq {seq} is not above the last written seq {tree._last_seq}")
        records, strings = tree._layout.pack(ev, cr, seq, features)
        if tombstones:
            records[:, 2] |= tombs.TOMBSTONE_BIT
        mem = tree._versions.current.mems[0]
        if len(keys):
            if tombstones:
                tree._has_tombstones = True
            rows = latest_rows(tree, keys, ev, cr)
            if mem.nrows and mem.nrows + len(rows) > mem.capacity:
                # full before the memory budget (short rows): start a new memtable rather
                # than grow this one by copying it
                tree._freeze()
                mem = tree._versions.current.mems[0]
            mem.insert(keys, records, rows, strings)
            tree._max_ev = max(tree._max_ev, int(ev.max()))
            tree._max_cr = max(tree._max_cr, int(cr.max()))
        mem.max_seq = seq
        tree._last_seq = seq
        if mem.nbytes >= tree.options.memtable_bytes:
            tree._freeze()
    if tree._versions.current.mems[1:]:
        if tree.options.background:
            tree._bg.wake()
        else:
            tree._flush_frozen()
            tree._maintain()


def latest_rows(tree: LSMTree, keys: np.ndarray, ev: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Rows of the batch to apply, in batch order: those not older than the version already
    visible in the tree. (Among rows of one key in the batch, the memtable insert keeps the
    latest: it applies them in order and a later row wins ties.)"""
    if int(ev.min()) >= tree._max_ev and int(cr.min()) >= tree._max_cr:
        # every row is at least as new as anything stored (the common case of a stream
        # written in event-time order): no stored version can win, skip the lookup
        return np.arange(len(keys), dtype=np.int64)
    return tree._versions.current.newer_rows(tree._layout, keys, ev, cr)


def wait_for_flushes(tree: LSMTree) -> None:
    if not tree.options.background:
        return
    opts = tree.options

    def behind() -> bool:
        v = tree._versions.current
        return (len(v.mems) > opts.max_immutable or len(v.levels[0]) >= opts.l0_stop_writes) and (
            tree._bg.error is None and not tree._closed
        )

    tree._bg.wait_while(behind)
