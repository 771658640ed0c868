"""Point-in-time matching for views with one int64 key, in numba (the plan that beats ASOF).

`IntKeyMatcher` holds the entity side sorted by (key, ts) (a counting sort when the keys are
dense, as ids usually are; else two stable sorts) plus one best-version slot per entity: memory O(entity rows), whatever the number of feature rows, which stream through
`add()` one file at a time. `finish()` returns, per entity row in input order, the matched
`(_seq, _row)` — unique within a view — or -1, with the ttl applied (and, by
`finish_positions`, the position the caller gave the matched row in `add`): the newest version with
`ts - ttl <= event_ts <= ts`, by (event_ts, created_ts, _seq, _row); a newest version that is
too old gives -1, never an older row. Not thread-safe; one matcher per query.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from offline import _pit_kernels as kernels

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min
# Dense keys: a counting sort of the entity rows (4 bytes per key of the span, for the
# setup only) and a direct key -> run table (4 bytes per key of the span), when the span is at
# most this many per entity row / distinct entity key; beyond, sorts and a hash table.
_DENSE_SPAN_PER_ROW = 32
_DIRECT_SPAN_PER_KEY = 32


class IntKeyMatcher:
    """Entity rows `(keys[i], ts[i])`; `valid[i]` False (a null key) never matches."""

    def __init__(self, keys: np.ndarray, ts: np.ndarray, valid: np.ndarray | None = None):
        if keys.dtype != np.int64 or ts.dtype != np.int64 or keys.shape != ts.shape:
            raise TypeError("IntKeyMatcher needs int64 keys and ts of one length")
        self._n = n = keys.shape[0]
        self._valid = valid
        lo = int(keys.min()) if n else 0
        span = int(keys.max()) - lo + 1 if n else 0
        if n and span <= _DENSE_SPAN_PER_ROW * n + (1 << 16):
            # dense keys (ids usually are): a counting sort, linear in rows and key span
            self._order = kernels.dense_order(keys, ts, lo, span)
        else:
            by_ts = np.argsort(ts, kind="stable")  # two stable sorts: faster than lexsort
            self._order = by_ts[np.argsort(keys[by_ts], kind="stable")]
            del by_ts  # temporaries go early: this runs beside the first decodes of an export
        sorted_keys = keys[self._order]
        cuts = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
        starts = np.concatenate(([0], cuts)).astype(np.int64) if n else np.zeros(0, np.int64)
        del cuts
        uniq = np.ascontiguousarray(sorted_keys[starts])
        del sorted_keys
        self._runs = np.empty((len(starts), 2), np.int64)
        self._runs[:, 0] = starts
        self._runs[:-1, 1] = starts[1:]
        if len(starts):
            self._runs[-1, 1] = n
        self._state = np.zeros((n, kernels.STATE_COLUMNS), np.int64)
        self._state[:, kernels.TS] = ts[self._order]
        self._state[:, kernels.B_SEQ] = -1
        # Key -> run index: a direct table when the keys are dense (ids usually are: one
        # cache miss per feature row), else a hash table (binary search over 1M keys cost
        # ~10 misses per row, measured 4x slower).
        self._base, self._bits = 0, 1
        self._direct = np.zeros(0, np.int32)
        self._slot_key, self._slot_val = np.zeros(2, np.int64), np.full(2, -1, np.int64)
        self._bitmap = np.zeros(0, np.uint8)
        if len(uniq):
            lo, hi = int(uniq[0]), int(uniq[-1])
            self._base = lo
            if hi - lo < max(_DIRECT_SPAN_PER_KEY * len(uniq), 1 << 16):
                self._direct = np.full(hi - lo + 1, -1, np.int32)
                self._direct[uniq - lo] = np.arange(len(uniq))
            else:
                self._bits = max(2, int(2 * len(uniq) - 1).bit_length())
                self._slot_key, self._slot_val = kernels.build_hash(uniq, self._bits)
                # A bit per key of the range in front of the hash table (at most 8 bytes per
                # entity key): feature keys without entity rows, usually most, stop there, in
                # cache and in key order, instead of at a random hash slot.
                if hi - lo < 64 * len(uniq) + (1 << 23):
                    bits = np.zeros(hi - lo + 1, np.bool_)
                    bits[uniq - lo] = True
                    self._bitmap = np.packbits(bits, bitorder="little")

    def add(
        self,
        batch: pa.RecordBatch | pa.Table,
        key: str,
        max_seq: int | None,
        lo_ts: int | None,
        pos_base: int = 0,
    ) -> None:
        """Offer feature rows (columns `key`, event_timestamp, created_timestamp, _seq, _row);
        row i of the batch has position `pos_base + i` (see `finish_positions`)."""
        if batch.num_rows == 0 or self._n == 0:
            return
        keys = _int64(batch.column(key))
        ets = _int64(batch.column("event_timestamp"))
        cts = _int64(batch.column("created_timestamp"))
        seqs = _int64(batch.column("_seq"))
        rows = _np(batch.column("_row")).astype(np.int32, copy=False)
        kernels.record_rows(
            self._base,
            self._direct,
            self._bitmap,
            self._slot_key,
            self._slot_val,
            self._bits,
            self._runs,
            self._state,
            keys,
            ets,
            cts,
            seqs,
            rows,
            _INT64_MAX if max_seq is None else int(max_seq),
            _INT64_MIN if lo_ts is None else int(lo_ts),
            int(pos_base),
        )

    def finish(self, ttl_ns: int) -> tuple[pa.Array, pa.Array]:
        """Matched `_seq` (int64) and `_row` (int32) per entity row in input order; null: none."""
        seq, row, _ = self._sweep(ttl_ns)
        missing = seq < 0
        return pa.array(seq, mask=missing), pa.array(row, mask=missing)

    def finish_positions(self, ttl_ns: int) -> np.ndarray:
        """Per entity row in input order, the position (`add`'s pos_base + i) of its matched
        feature row, or -1 for none."""
        out_seq = np.empty(self._n, np.int64)
        out_row = np.empty(self._n, np.int32)
        out_pos = np.empty(self._n, np.int64)
        kernels.sweep(self._runs, self._state, int(ttl_ns), out_seq, out_row, out_pos)
        del out_seq, out_row
        pos = np.empty(self._n, np.int64)
        pos[self._order] = out_pos
        if self._valid is not None:
            pos[~self._valid] = -1
        return pos

    def _sweep(self, ttl_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out_seq = np.empty(self._n, np.int64)
        out_row = np.empty(self._n, np.int32)
        out_pos = np.empty(self._n, np.int64)
        kernels.sweep(self._runs, self._state, int(ttl_ns), out_seq, out_row, out_pos)
        seq = np.empty(self._n, np.int64)
        row = np.empty(self._n, np.int32)
        pos = np.empty(self._n, np.int64)
        seq[self._order] = out_seq
        row[self._order] = out_row
        pos[self._order] = out_pos
        if self._valid is not None:
            seq[~self._valid] = -1
            row[~self._valid] = -1
            pos[~self._valid] = -1
        return seq, row, pos


def _np(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.to_numpy(zero_copy_only=False)


def _int64(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.type != pa.int64():
        column = column.cast(pa.int64())
    return np.ascontiguousarray(column.to_numpy(zero_copy_only=False))
