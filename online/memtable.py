"""Memtable: the newest rows, key -> latest record, in a numba open-addressing hash table.

Records sit in a growable (capacity, rowwords) int64 array indexed by slot; string values in one
object array per string field, indexed by the same slot. Only the latest version of a key is kept
(see `_kernels.mem_insert`).

Thread-safety: `insert` and `lookup` take the memtable's lock (the insert kernel runs for about a
millisecond per 10k rows); a frozen memtable is never written again and is read without it.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pyarrow as pa

from online import _kernels as K
from online.schema import Field, Layout

__all__ = ["Memtable"]


class Memtable:
    """Latest row per key for one layout."""

    def __init__(self, layout: Layout, capacity: int = 1024) -> None:
        self.layout = layout
        self.lock = threading.Lock()
        self.nrows = 0
        self.max_seq = 0  # seq of the last batch written while this memtable was active
        self.string_bytes = 0
        self.frozen = False
        self._alloc_rows(capacity)
        self._alloc_hash(1 << (2 * capacity - 1).bit_length())  # a power of two

    def _alloc_rows(self, cap: int) -> None:
        n = self.nrows
        recs = np.zeros((cap, self.layout.rowwords), dtype=np.int64)
        slot_keys = np.zeros(cap, dtype=np.uint64)
        strings = {i: np.empty(cap, dtype=object) for i in self.layout.string_fields}
        if n:
            recs[:n] = self.recs[:n]
            slot_keys[:n] = self.slot_keys[:n]
            for i in strings:
                strings[i][:n] = self.strings[i][:n]
        self.recs, self.slot_keys, self.strings = recs, slot_keys, strings

    def _alloc_hash(self, cap: int) -> None:
        assert cap & (cap - 1) == 0, "hash capacity must be a power of two"
        self.htab = np.zeros((cap, 2), dtype=np.uint64)  # key, slot + 1 (0 = empty)
        if self.nrows:
            K.mem_rehash(self.slot_keys, self.nrows, self.htab)

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
        strings: dict[int, np.ndarray],
        string_bytes: int = 0,
    ) -> int:
        """Apply batch rows `rows` (indices into keys/records/strings; their keys unique). A row
        older than the stored version of its key is dropped. Returns how many rows were applied."""
        m = len(rows)
        with self.lock:
            need = self.nrows + m
            if need > len(self.recs):
                self._alloc_rows(max(need, 2 * len(self.recs)))
            if 2 * need > len(self.htab):
                self._alloc_hash(1 << (2 * need - 1).bit_length())
            out_slot = np.empty(m, dtype=np.int64)
            self.nrows = K.mem_insert(
                self.htab, self.slot_keys, self.recs, self.nrows, keys, records, rows, out_slot
            )
            applied = out_slot >= 0
            if strings:
                slots, src = out_slot[applied], rows[applied]
                for i, col in strings.items():
                    self.strings[i][slots] = col[src]
            self.string_bytes += string_bytes
            return int(applied.sum())

    def lookup(self, q, todo, ntodo, out, loc, srcid, strings: bool = False):
        """mem_lookup under the lock; see _kernels.table_lookup for the outputs. Returns (keys
        remaining, source): the source to read string values from later, a snapshot of the
        strings of the rows found (taken under the same lock as the records, so a later write
        cannot change them) when `strings`, else self."""
        with self._read_lock():
            rem = K.mem_lookup(q, todo, ntodo, self.htab, self.recs, out, loc, srcid)
            if not strings or not self.strings or rem == ntodo:
                return rem, self
            tag = np.int64(srcid) << K.LOC_SHIFT
            hit = loc[(loc >> K.LOC_SHIFT) == srcid]
            slots = np.unique(hit - tag)
            snap = {i: col[slots] for i, col in self.strings.items()}
        return rem, _StringSnapshot(self.layout, slots, snap)

    def string_values(self, field: Field, positions: np.ndarray) -> list:
        """Python values (str or None) of string field `field` at slots `positions`."""
        with self._read_lock():
            return list(self.strings[self.layout.index[field.name]][positions])

    def sorted_run(self) -> tuple[np.ndarray, np.ndarray, dict[int, pa.Array]]:
        """(keys sorted, records, {string field: large_string array}), copies owned by the caller."""
        with self._read_lock():
            n = self.nrows
            order = np.argsort(self.slot_keys[:n], kind="stable")
            keys = self.slot_keys[:n][order]
            recs = self.recs[:n][order]
            strings = {
                i: pa.array(col[:n][order], type=pa.large_string(), from_pandas=True)
                for i, col in self.strings.items()
            }
        return keys, recs, strings


class _StringSnapshot:
    """String values of some memtable slots, copied at lookup time."""

    def __init__(self, layout: Layout, slots: np.ndarray, values: dict[int, np.ndarray]) -> None:
        self.layout = layout
        self.slots = slots  # sorted, unique
        self.values = values

    def string_values(self, field: Field, positions: np.ndarray) -> list:
        col = self.values[self.layout.index[field.name]]
        return list(col[np.searchsorted(self.slots, positions)])
