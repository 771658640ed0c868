"""Memtable: the newest rows, key -> latest record, in a numba open-addressing hash table.

Records sit in a growable (capacity, rowwords) int64 array indexed by slot. String values stay in
the Arrow columns of the batches inserted (never Python objects: converting strings to and from
objects holds the GIL for long stretches and stalls every other thread, the server's event loop
included); per slot, `string_rows` holds its row among them (-1: null). Only the latest
version of a key is kept (see `_hash_kernels.mem_insert`).

Thread-safety: `insert` and `lookup` take the memtable's lock for one kernel call; a frozen
memtable is never written again and is read without it (see the GUARDED_BY comments).
"""

from __future__ import annotations

import bisect
import contextlib
import threading

import numpy as np
import pyarrow as pa

from online import _hash_kernels as H
from online import _kernels as K
from online.schema import Field, Layout

__all__ = ["Memtable"]


class Memtable:
    """Latest row per key for one layout. The row and hash arrays are GUARDED_BY(lock) while the
    memtable is active; once `frozen` they are never written again and are read without it."""

    recs: np.ndarray  # (capacity, rowwords) int64 records by slot; GUARDED_BY(lock)
    slot_keys: np.ndarray  # key of each slot; GUARDED_BY(lock)
    string_rows: (
        np.ndarray
    )  # per slot, its row among the string chunks (-1: null); GUARDED_BY(lock)
    htab: np.ndarray  # (cap, 2) uint64 hash table of key, slot + 1; GUARDED_BY(lock)

    def __init__(self, layout: Layout, capacity: int = 1024) -> None:
        self.layout = layout
        self.lock = threading.Lock()
        self.nrows = 0  # GUARDED_BY(lock)
        # seq of the last batch written while this memtable was active; GUARDED_BY(the tree's
        # _write_lock)
        self.max_seq = 0
        self.string_bytes = 0  # GUARDED_BY(lock)
        # per string field, the large_string column of every batch inserted (only appended to);
        # chunk_starts[c] is the row (counted over all batches) where chunk c starts;
        # GUARDED_BY(lock)
        self.string_chunks: dict[int, list[pa.Array]] = {i: [] for i in layout.string_fields}
        self.chunk_starts: list[int] = []  # GUARDED_BY(lock)
        self.chunk_rows = 0  # GUARDED_BY(lock)
        self.frozen = False  # set once, under the tree's _write_lock, after the last insert
        self._alloc_rows(capacity)
        self._alloc_hash(1 << (2 * capacity - 1).bit_length())  # a power of two

    def _alloc_rows(self, cap: int) -> None:
        n = self.nrows
        recs = np.zeros((cap, self.layout.rowwords), dtype=np.int64)
        slot_keys = np.zeros(cap, dtype=np.uint64)
        string_rows = np.full(cap if self.layout.string_fields else 0, -1, dtype=np.int64)
        if n:
            recs[:n] = self.recs[:n]
            slot_keys[:n] = self.slot_keys[:n]
            string_rows[:n] = self.string_rows[:n]
        self.recs, self.slot_keys, self.string_rows = recs, slot_keys, string_rows

    def _alloc_hash(self, cap: int) -> None:
        assert cap & (cap - 1) == 0, "hash capacity must be a power of two"
        self.htab = np.zeros((cap, 2), dtype=np.uint64)  # key, slot + 1 (0 = empty)
        if self.nrows:
            H.mem_rehash(self.slot_keys, self.nrows, self.htab)

    def _read_lock(self) -> threading.Lock | contextlib.nullcontext:
        # a frozen memtable is never written again (frozen is set under the tree's write lock,
        # after the last insert), so its readers need no lock
        return contextlib.nullcontext() if self.frozen else self.lock

    @property
    def capacity(self) -> int:
        """Rows that fit without growing the arrays."""
        return len(self.recs)

    @property
    def nbytes(self) -> int:
        return self.nrows * (self.layout.rowbytes + 8) + self.string_bytes

    def insert(
        self,
        keys: np.ndarray,
        records: np.ndarray,
        rows: np.ndarray,
        strings: dict[int, pa.Array],
    ) -> int:
        """Apply batch rows `rows` (indices into keys/records/strings; their keys unique). A row
        older than the stored version of its key is dropped. `strings`: the batch's string fields
        as large_string arrays (Layout.pack), kept by reference; empty: the rows' strings are
        null. Returns how many rows were applied."""
        m = len(rows)
        with self.lock:
            need = self.nrows + m
            if need > len(self.recs):
                self._alloc_rows(max(need, 2 * len(self.recs)))
            if 2 * need > len(self.htab):
                self._alloc_hash(1 << (2 * need - 1).bit_length())
            out_slot = np.empty(m, dtype=np.int64)
            self.nrows = H.mem_insert(
                self.htab, self.slot_keys, self.recs, self.nrows, keys, records, rows, out_slot
            )
            applied = out_slot >= 0
            if self.string_chunks:
                slots, src = out_slot[applied], rows[applied]
                if strings:
                    for i, chunks in self.string_chunks.items():
                        chunks.append(strings[i])
                    self.chunk_starts.append(self.chunk_rows)
                    self.string_rows[slots] = self.chunk_rows + src
                    self.chunk_rows += len(keys)
                    self.string_bytes += sum(c.nbytes for c in strings.values())
                else:
                    self.string_rows[slots] = -1
            return int(applied.sum())

    def lookup(
        self,
        q: np.ndarray,
        todo: np.ndarray,
        ntodo: int,
        out: np.ndarray,
        loc: np.ndarray,
        srcid: int,
        strings: bool = False,
    ) -> tuple[int, Memtable | _StringSnapshot]:
        """mem_lookup under the lock; see _kernels.table_lookup for the outputs. Returns (keys
        remaining, source): the source to read string values from later, a snapshot of the
        strings of the rows found (taken under the same lock as the records, so a later write
        cannot change them) when `strings`, else self."""
        with self._read_lock():
            rem = H.mem_lookup(q, todo, ntodo, self.htab, self.recs, out, loc, srcid)
            if not strings or not self.string_chunks or rem == ntodo:
                return rem, self
            tag = np.int64(srcid) << K.LOC_SHIFT
            hit = loc[(loc >> K.LOC_SHIFT) == srcid]
            slots = np.unique(hit - tag)
            rows = self.string_rows[slots]  # copied: a later write may point a slot elsewhere
        # The chunk lists are shared, not copied: they are only appended to, so every row taken
        # above stays where it is (and bisect over a longer chunk_starts still finds it).
        return rem, _StringSnapshot(self.layout, slots, rows, self.string_chunks, self.chunk_starts)

    def string_values(self, field: Field, positions: np.ndarray) -> list:
        """Python values (str or None) of string field `field` at slots `positions`."""
        with self._read_lock():
            return read_strings(
                self.string_chunks[self.layout.index[field.name]],
                self.chunk_starts,
                self.string_rows[positions],
            )

    def sorted_run(self) -> tuple[np.ndarray, np.ndarray, dict[int, pa.Array]]:
        """(keys sorted, records, {string field: large_string array}), copies owned by the caller."""
        with self._read_lock():
            n = self.nrows
            order = np.argsort(self.slot_keys[:n], kind="stable")
            keys = self.slot_keys[:n][order]
            recs = self.recs[:n][order]
            strings = self._sorted_strings(order) if self.string_chunks else {}
        return keys, recs, strings

    def _sorted_strings(self, order: np.ndarray) -> dict[int, pa.Array]:
        # Arrow's concat and take release the GIL (a flush runs beside the serving threads)
        rows = self.string_rows[: len(order)][order]
        rows = pa.array(rows, mask=rows < 0)
        return {
            i: pa.concat_arrays(chunks).take(rows)
            if chunks
            else pa.nulls(len(rows), pa.large_string())
            for i, chunks in self.string_chunks.items()
        }


def read_strings(chunks: list[pa.Array], starts: list[int], rows: np.ndarray) -> list:
    """Python values (str or None) at `rows` of the concatenation of `chunks` (chunk c starting
    at row starts[c]); a negative row reads None."""
    if len(rows) <= 4:  # the serving case: scalar reads beat building a take() array
        out: list = []
        for r in rows.tolist():
            if r < 0:
                out.append(None)
            else:
                c = bisect.bisect_right(starts, r) - 1
                out.append(chunks[c][r - starts[c]].as_py())
        return out
    taken = pa.chunked_array(chunks, type=pa.large_string()).take(pa.array(rows, mask=rows < 0))
    return taken.to_pylist()


class _StringSnapshot:
    """String positions of some memtable slots, copied at lookup time."""

    def __init__(
        self,
        layout: Layout,
        slots: np.ndarray,
        rows: np.ndarray,
        chunks: dict[int, list[pa.Array]],
        starts: list[int],
    ) -> None:
        self.layout = layout
        self.slots = slots  # sorted, unique
        self.rows = rows  # string row of each slot
        self.chunks = chunks
        self.starts = starts

    def string_values(self, field: Field, positions: np.ndarray) -> list:
        rows = self.rows[np.searchsorted(self.slots, positions)]
        return read_strings(self.chunks[self.layout.index[field.name]], self.starts, rows)
