"""Tombstones and purges: how the tree records a deleted key and when it forgets it for good.

A tombstone is an ordinary record whose seq word carries TOMBSTONE_BIT (real seqs stay below
it). The writer gives it an (event_ts, created_ts) not older than any version of its key, so
the version order (memtable insert, the write path's check, merges) makes it the key's latest
version like any newer row, and a later row (event time after the tombstone's) replaces it.
- reads: `get_many` reports a tombstone without fields as not found; one that carries fields
  (a hashed view keeps its slot owned by a marker text) returns them. Scans never yield
  tombstones.
- compaction: once a merge writes the deepest level (no sstable below it), the tombstones in
  its output are dropped, and with them every older version of their keys (the merge already
  kept only the tombstone); tombstones with fields stay (a slot of an open-addressed key space
  must stay occupied, or probes for keys placed after it would stop short). With a purge ttl,
  rows whose event time is older than the compaction's now - ttl are dropped there too: older
  versions of a key are older still, so no stale version can resurface. With a kept field
  (TreeOptions.purge_keep_field: a hashed key space's key text), an expired row is not dropped
  but becomes a tombstone holding that field alone, with its own times and seq: its slot stays
  owned by its key (reads find the key, with every feature null and the old event time, so
  they answer it as expired as before), the other fields' space is freed, and a later version
  of the key replaces it like any row.
Pure functions over numpy arrays and Arrow tables; thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from online.compaction import Compaction
from online.errors import OnlineError
from online.schema import HEADER_BYTES, Layout
from online.sstable import SSTable

__all__ = ["TOMBSTONE_BIT", "is_tombstone", "hide_tombstones", "purge_run", "live_rows"]

# set in the seq word of a tombstone record — on-disk format, do not change
TOMBSTONE_BIT = 1 << 62


def is_tombstone(seqs: np.ndarray) -> np.ndarray:
    """(n,) bool: which records (their seq words) are tombstones."""
    return (np.asarray(seqs, dtype=np.int64) & TOMBSTONE_BIT) != 0


def _has_fields(layout: Layout, records: np.ndarray) -> np.ndarray:
    """(n,) bool: records with at least one valid field."""
    n = len(records)
    if not layout.bitmap_bytes or n == 0:
        return np.zeros(n, dtype=bool)
    rec = np.ascontiguousarray(records)
    bits = np.ndarray((n, layout.bitmap_bytes), np.uint8, rec, HEADER_BYTES, (layout.rowbytes, 1))
    return np.asarray(bits.any(axis=1))


def hide_tombstones(layout: Layout, records: np.ndarray, loc: np.ndarray) -> None:
    """Mark found tombstones without fields as not found (loc = -1), in place."""
    dead = (loc >= 0) & is_tombstone(records[:, 2])
    if dead.any():
        dead &= ~_has_fields(layout, records)
        loc[dead] = -1


def purge_run(
    layout: Layout,
    keys: np.ndarray,
    recs: np.ndarray,
    strings: dict,
    drop_tombstones: bool,
    expire_before_ns: int | None,
    keep_field: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict, int, int]:
    """A merged run without its tombstones (when `drop_tombstones`) and without rows whose
    event time is below `expire_before_ns` (None: keep them). Tombstones with fields stay: they
    hold a slot that other keys' probes must keep meeting. With `keep_field` (a field index),
    expired rows become tombstones holding only that field instead of going (see the module
    docstring). Returns (keys, recs, strings, tombstones dropped, rows expired); the inputs are
    returned unchanged when nothing changes."""
    n = len(keys)
    if n == 0 or (not drop_tombstones and expire_before_ns is None):
        return keys, recs, strings, 0, 0
    drop = np.zeros(n, dtype=bool)
    tomb = 0
    if drop_tombstones:
        dead = is_tombstone(recs[:, 2])
        if dead.any():
            dead &= ~_has_fields(layout, recs)
        tomb = int(dead.sum())
        drop |= dead
    expired = 0
    if expire_before_ns is not None:
        old = (recs[:, 0] < expire_before_ns) & ~drop
        if keep_field is not None:
            old &= ~is_tombstone(recs[:, 2])  # tombstones with fields: kept as they are
            expired = int(old.sum())
            if expired:
                recs, strings = _keep_only(layout, recs, strings, old, keep_field)
        else:
            expired = int(old.sum())
            drop |= old
    if not drop.any():
        return keys, recs, strings, 0, expired
    keep = np.flatnonzero(~drop)
    idx = pa.array(keep)
    out_strings = {i: col.take(idx) for i, col in strings.items()}
    return keys[keep], np.ascontiguousarray(recs[keep]), out_strings, tomb, expired


def keep_field_index(layout: Layout, name: str) -> int | None:
    """The index of field `name` (TreeOptions.purge_keep_field) in `layout`; None for ""."""
    if not name:
        return None
    names = [f.name for f in layout.fields]
    if name not in names:
        raise OnlineError(f"TreeOptions.purge_keep_field {name!r} is not a field; fields: {names}")
    return names.index(name)


def _keep_only(
    layout: Layout, recs: np.ndarray, strings: dict, rows: np.ndarray, keep: int
) -> tuple[np.ndarray, dict]:
    """Copies of `recs`/`strings` where the `rows` (bool mask) are tombstones holding only
    field `keep`: seq word marked, every other field invalid, zeroed (fixed width) or null."""
    recs = np.array(recs, order="C", copy=True)
    recs[rows, 2] |= TOMBSTONE_BIT
    u8 = recs.view(np.uint8).reshape(len(recs), layout.rowbytes)
    at = np.flatnonzero(rows)
    u8[at, HEADER_BYTES : HEADER_BYTES + layout.bitmap_bytes] = 0
    u8[at, HEADER_BYTES + keep // 8] = 1 << (keep % 8)
    for i, (off, size) in enumerate(zip(layout.offsets, layout.sizes, strict=True)):
        if off >= 0 and i != keep:
            u8[at, off : off + size] = 0
    mask = pa.array(rows)
    out = {
        i: col if i == keep else pc.if_else(mask, pa.nulls(len(col), col.type), col)
        for i, col in strings.items()
    }
    return recs, out


def rewrite_all(tables: list[tuple[int, SSTable]]) -> Compaction | None:
    """A compaction rewriting every sstable into the deepest level, even when they already are
    one sorted run there (so that its tombstones and expired rows go); None without sstables."""
    if not tables:
        return None
    return Compaction(tuple(tables), max(1, max(level for level, _ in tables)))


def live_rows(table: pa.Table) -> pa.Table:
    """A scan table (`seq` column) without its tombstone rows."""
    if table.num_rows == 0:
        return table
    seq = table.column("seq")
    dead = pc.not_equal(pc.bit_wise_and(seq, pa.scalar(TOMBSTONE_BIT, pa.int64())), 0)
    if not pc.any(dead).as_py():
        return table
    return table.filter(pc.invert(dead))


def live_chunks(chunks: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """`live_rows` of every chunk of a scan, skipping chunks left empty."""
    for chunk in chunks:
        out = live_rows(chunk)
        if out.num_rows:
            yield out
