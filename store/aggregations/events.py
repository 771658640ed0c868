"""The online event state of an aggregation view, and the tree that owns it.

`AggregationTree` is the view's online tree (an LSMTree holding the latest event per entity,
which keeps hashed-key resolution and durability exactly as for plain views) plus an
`EventState`: every event of the view's recent past in columnar arrays (event_ts, created_ts,
seq, row, entity, one value and one validity array per event column) with a per-entity index
(an open-addressing table from the engine key to the entity) and per-entity chains sorted
newest first (store/aggregations/_kernels.py). Aggregates are computed from it at read time.

The state is not persisted: it is rebuilt from the offline store (which holds every
acknowledged event after recovery) by `rebuild`, on open and whenever apply reopens the tree.
Until rebuilt it ignores writes (recovery's replay reaches the offline store as well).
Retention: compaction drops events with event_ts <= W - (longest window + hop + slack), W = the
newest event_ts seen or the clock, whichever is earlier, so reads at T >= W - slack are exact.

Thread-safety: writes come from the store's write path, one at a time (in seq order). Readers
and the writer's linking step hold `_lock`; the writer fills new rows and builds grown or
compacted arrays outside it (it is the only mutator), then swaps them in under it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from online import Field, LSMTree, TreeOptions
from store.aggregations import _kernels as K
from store.definitions import FeatureView

log = logging.getLogger(__name__)

# Events kept online beyond the longest window (+ hop): reads at T >= newest event - slack are
# exact. A module attribute so tests and deployments can widen it.
ONLINE_SLACK_NS = 86_400 * 10**9
MIN_CAPACITY = 1024
_POS_MASK = (1 << 32) - 1


def strings(a: _Arrays, column: str, refs: np.ndarray) -> list[str | None]:
    """The strings of `column` at event references `refs` (the column's ov values)."""
    chunks = a.chunks[column]
    return [chunks[r >> 32][r & _POS_MASK].as_py() for r in refs.tolist()]


def string_at(a: _Arrays, column: str, ref: int) -> str | None:
    """The string of `column` at one event reference (`strings` for one row)."""
    return a.chunks[column][ref >> 32][ref & _POS_MASK].as_py()


COMPACT_MIN_EVENTS = 1 << 16  # compaction is considered only above this many events


@dataclass
class _Arrays:
    """One generation of the state's arrays (swapped whole on growth or compaction)."""

    ts: np.ndarray
    cr: np.ndarray
    sq: np.ndarray
    rw: np.ndarray
    ent: np.ndarray
    nxt: np.ndarray
    fv: np.ndarray  # (cap, C) float64: values for sums (0 for strings and nulls)
    ov: np.ndarray  # (cap, C) int64: order keys for min/max (_kernels.order_keys; ints exact)
    okm: np.ndarray  # (cap, C) bool: not null
    # string columns: the ingested Arrow arrays; ov holds each event's reference into them
    # (chunk << 32 | position), and a reader decodes with `strings`
    chunks: dict[str, list[pa.Array]]
    vals: dict[str, np.ndarray]  # per column, a view: floats in fv, others (and refs) in ov
    valid: dict[str, np.ndarray]  # per column, a view of okm
    head: np.ndarray  # per entity
    ekey: np.ndarray  # per entity: its engine key
    hkeys: np.ndarray
    hvals: np.ndarray


def _numeric_kind(dtype: str) -> type:
    return np.float64 if dtype in ("float32", "float64") else np.int64


class EventState:
    """The events of one aggregation view within its retention; see the module docstring."""

    def __init__(self, view: FeatureView) -> None:
        self.view = view
        self.columns = {f.name: f.dtype for f in view.features}
        self.col_index = {c: i for i, c in enumerate(self.columns)}
        longest = max(a.window_ns for a in view.aggregations)
        self.retention_ns = longest + view.hop_ns
        self._lock = threading.Lock()
        self.ready = False
        self.n = 0  # GUARDED_BY(_lock) for readers; events linked
        self.nent = 0  # GUARDED_BY(_lock)
        self.watermark = np.iinfo(np.int64).min  # newest event_ts seen (writer only)
        self._a = self._alloc(MIN_CAPACITY, MIN_CAPACITY)  # GUARDED_BY(_lock) (the reference)

    def cutoff(self, newest_ns: int) -> int:
        """Events with event_ts <= this may leave the state: the longest window (+ hop) and the
        slack before the newest event, or before the clock if that is earlier (one event stamped
        far in the future must not evict the present)."""
        return min(newest_ns, time.time_ns()) - self.retention_ns - ONLINE_SLACK_NS

    # ------------------------------------------------------------------ arrays

    def _alloc(self, cap: int, ent_cap: int) -> _Arrays:
        nc = len(self.columns)
        fv, ov, okm = np.zeros((cap, nc)), np.zeros((cap, nc), np.int64), np.zeros((cap, nc), bool)
        chunks: dict[str, list[pa.Array]] = {
            c: [] for c, d in self.columns.items() if d == "string"
        }
        vals: dict[str, np.ndarray] = {}
        for i, (name, dtype) in enumerate(self.columns.items()):
            vals[name] = fv[:, i] if _numeric_kind(dtype) is np.float64 else ov[:, i]
        table = 1 << max(4, (2 * ent_cap - 1).bit_length())
        return _Arrays(
            np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.int64),
            np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.full(cap, -1, np.int64),
            fv, ov, okm, chunks, vals, {c: okm[:, i] for i, c in enumerate(self.columns)},
            np.full(ent_cap, -1, np.int64), np.zeros(ent_cap, np.uint64),
            np.zeros(table, np.uint64), np.full(table, -1, np.int64),
        )  # fmt: skip

    def _grown(self, need: int, need_ent: int) -> _Arrays:
        """Writer only: arrays with room for `need` events and `need_ent` entities."""
        a = self._a
        cap, ecap = len(a.ts), len(a.head)
        if need <= cap and need_ent <= ecap:
            return a
        new_cap = max(cap, MIN_CAPACITY)
        while new_cap < need:
            new_cap *= 2
        new_ecap = ecap
        while new_ecap < need_ent:
            new_ecap *= 2
        b = self._alloc(new_cap, new_ecap)
        n, ne = self.n, self.nent
        for name in ("ts", "cr", "sq", "rw", "ent", "nxt"):
            getattr(b, name)[:n] = getattr(a, name)[:n]
        b.fv[:n], b.ov[:n], b.okm[:n] = a.fv[:n], a.ov[:n], a.okm[:n]
        b.chunks = a.chunks  # appended to in place (list appends; readers index older chunks)
        b.head[:ne] = a.head[:ne]
        b.ekey[:ne] = a.ekey[:ne]
        if len(b.hkeys) != len(a.hkeys):
            b.hkeys, b.hvals = K.rehash(b.ekey, ne, len(b.hkeys))
        else:
            b.hkeys[:], b.hvals[:] = a.hkeys, a.hvals
        return b

    def _compacted(self) -> tuple[_Arrays, int] | None:
        """Writer only: arrays without the events past retention and their event count, or None
        when too few would go."""
        a = self._a
        cutoff = self.cutoff(int(self.watermark))
        if np.count_nonzero(a.ts[: self.n] <= cutoff) < 0.25 * self.n:
            return None  # a cheap bound first: too few events are past retention
        order, head = K.compact_order(a.head, a.nxt, a.ts, self.nent, cutoff)
        if len(order) > 0.75 * self.n:
            return None
        m = len(order)
        b = self._alloc(max(MIN_CAPACITY, 2 * m), len(a.head))
        for name in ("ts", "cr", "sq", "rw", "ent"):
            getattr(b, name)[:m] = getattr(a, name)[order]
        b.nxt[:m] = np.arange(-1, m - 1)
        first = np.ones(m, dtype=bool)
        first[1:] = b.ent[1:m] != b.ent[: m - 1]
        b.nxt[:m][first] = -1
        b.fv[:m], b.ov[:m], b.okm[:m] = a.fv[order], a.ov[order], a.okm[order]
        for c in a.chunks:  # one new chunk of the kept events' strings
            i = self.col_index[c]
            sizes = np.array([0] + [len(x) for x in a.chunks[c]], np.int64)
            refs = b.ov[:m, i]
            pos = np.cumsum(sizes)[refs >> 32] + (refs & _POS_MASK)
            kept = pa.chunked_array(a.chunks[c], pa.string()).take(pa.array(pos))
            b.chunks[c] = [kept.combine_chunks()]
            b.ov[:m, i] = np.arange(m)
        b.head[: self.nent] = head
        b.ekey[:] = a.ekey
        b.hkeys, b.hvals = a.hkeys.copy(), a.hvals.copy()
        return b, m

    # ------------------------------------------------------------------ writes

    def append(
        self, keys: np.ndarray, ts: np.ndarray, cr: np.ndarray, seq: int, table: pa.Table
    ) -> None:
        """Add one batch of events (engine keys, event and created times in ns, the batch's
        seq, a table holding the event columns). Writer only; no-op until `ready`."""
        if not self.ready or not len(keys):
            return
        b = len(keys)
        self.add(keys, ts, cr, np.full(b, seq, np.int64), np.arange(b, dtype=np.int64), table)

    def add(
        self,
        keys: np.ndarray,
        ts: np.ndarray,
        cr: np.ndarray,
        sq: np.ndarray,
        rw: np.ndarray,
        table: pa.Table,
    ) -> None:
        """Add events with their own seq and row (the rebuild's path; `append` for a batch).
        Writer only; cheapest when events come in version order (each links at its head)."""
        b = len(keys)
        if not b:
            return
        if self.n + b > len(self._a.ts) and self.n > COMPACT_MIN_EVENTS:  # full: compact or grow
            compacted = self._compacted()
            if compacted is not None:
                with self._lock:
                    self._a, self.n = compacted
                log.debug("event state of %s compacted to %d events", self.view.name, self.n)
        a = self._grown(self.n + b, self.nent + b)
        if a is not self._a:
            with self._lock:
                self._a = a
        ent, nent = K.add_entities(a.hkeys, a.hvals, a.ekey, self.nent, keys)
        lo, hi = self.n, self.n + b
        a.ts[lo:hi] = ts
        a.cr[lo:hi] = cr
        a.sq[lo:hi] = sq
        a.rw[lo:hi] = rw
        a.ent[lo:hi] = ent
        for i, (c, dtype) in enumerate(self.columns.items()):
            col = table.column(c).combine_chunks()
            a.okm[lo:hi, i] = _validity(col)
            if dtype == "string":
                a.ov[lo:hi, i] = (len(a.chunks[c]) << 32) + np.arange(b, dtype=np.int64)
                a.chunks[c].append(col.cast(pa.string()))
                continue
            v = _values(col, dtype)
            a.fv[lo:hi, i] = v
            a.ov[lo:hi, i] = K.order_keys(v)
        with self._lock:
            K.link(a.head, a.nxt, a.ent, a.ts, a.cr, a.sq, a.rw, lo, hi)
            self.n, self.nent = hi, nent
        self.watermark = max(int(self.watermark), int(ts.max()))

    def forget(self, keys: np.ndarray) -> None:
        """Drop every event of the entities `keys` (engine keys): their chains are cut, and
        compaction reclaims the events. Writer only."""
        if not self.ready or not len(keys):
            return
        with self._lock:
            a = self._a
            ents = K.find_entities(a.hkeys, a.hvals, keys)
            a.head[ents[ents >= 0]] = -1

    # ------------------------------------------------------------------ reads

    def read(self, fn: Any, *args: Any) -> Any:
        """Call fn(arrays, *args) under the lock (a reader's consistent view)."""
        with self._lock:
            return fn(self._a, self.n, *args)

    def stats(self) -> dict[str, Any]:
        a = self._a
        arrays = (a.ts, a.cr, a.sq, a.rw, a.ent, a.nxt, a.head, a.ekey, a.hkeys, a.hvals)
        nbytes = sum(x.nbytes for x in arrays) + a.fv.nbytes + a.ov.nbytes + a.okm.nbytes
        # strings: the references and the str objects (of the events held)
        nbytes += sum(x.nbytes for chunks in a.chunks.values() for x in chunks)
        return {"events": self.n, "entities": self.nent, "bytes": int(nbytes), "ready": self.ready}


def _validity(col: pa.Array) -> np.ndarray:
    if col.null_count == 0:
        return np.ones(len(col), dtype=bool)
    return np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _values(col: pa.Array, dtype: str) -> np.ndarray:
    """An event column as the state stores it (nulls as 0 / None)."""
    if dtype == "string":
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)
    if pa.types.is_timestamp(col.type) or pa.types.is_boolean(col.type):
        col = col.cast(pa.int64())
    kind = _numeric_kind(dtype)
    filled = pc.fill_null(col, pa.scalar(0, col.type)) if col.null_count else col
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=kind)


class AggregationTree(LSMTree):
    """The online tree of an aggregation view: the LSMTree plus the view's EventState."""

    def __init__(
        self, path: str | Path, fields: list[Field], options: TreeOptions, view: FeatureView
    ) -> None:
        super().__init__(path, fields, options)
        self.events = EventState(view)

    def write(
        self,
        seq: int,
        keys: np.ndarray,
        event_ts: np.ndarray,
        created_ts: np.ndarray,
        features: pa.RecordBatch | pa.Table,
    ) -> None:
        super().write(seq, keys, event_ts, created_ts, features)
        table = features if isinstance(features, pa.Table) else pa.Table.from_batches([features])
        self.events.append(
            np.ascontiguousarray(keys, dtype=np.uint64),
            np.ascontiguousarray(event_ts, dtype=np.int64),
            np.ascontiguousarray(created_ts, dtype=np.int64),
            seq,
            table,
        )

    def delete(
        self,
        seq: int,
        keys: np.ndarray,
        event_ts: np.ndarray,
        created_ts: np.ndarray,
        features: pa.RecordBatch | pa.Table | None = None,
    ) -> None:
        """Tombstones in the tree; the entities' events leave the event state."""
        super().delete(seq, keys, event_ts, created_ts, features)
        self.events.forget(np.ascontiguousarray(keys, dtype=np.uint64))

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out["events"] = self.events.stats()
        return out
