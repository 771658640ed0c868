"""LookupResult: the rows `get_many` found, as one (n, rowwords) record buffer plus where each row
came from (for string values, which live outside the records). Every array it returns is a new
array owned by the caller. Immutable after construction; safe to read from any thread.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from online._kernels import LOC_SHIFT
from online.schema import HEADER_BYTES, Field, Layout

__all__ = ["LookupResult", "feature_arrays", "COLUMNS_SMALL_N"]

COLUMNS_SMALL_N = 4  # LookupResult.columns: up to this many rows, decode row by row with struct
_STRUCT_CODES = {
    "int32": "i",
    "int64": "q",
    "float32": "f",
    "float64": "d",
    "bool": "?",
    "timestamp": "q",
}
_BITMAP_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


class _Decoder:
    """How `columns` reads the records of one layout: a struct of the whole record (header,
    bitmap as one little-endian int or bytes, each non-string field, padding), the struct item
    where each field starts (-1 for strings) and its vector width, and per field (dtype, byte
    offset, vector width) for strided numpy views."""

    def __init__(self, layout: Layout) -> None:
        fmt, pos, item = ["<qqq"], HEADER_BYTES, 3
        bb = layout.bitmap_bytes
        self.bitmap_item = -1
        self.bitmap_bytes = False  # bitmap unpacked as bytes (widths other than 1, 2, 4, 8)
        if bb:
            code = _BITMAP_CODES.get(bb, f"{bb}s")
            self.bitmap_bytes = code.endswith("s")
            fmt.append(code)
            self.bitmap_item, pos, item = 3, pos + bb, 4
        self.items: list[tuple[int, int]] = []
        self.arrays: list[tuple[np.dtype, int, int]] = []
        for i, f in enumerate(layout.fields):
            if f.dtype == "string":
                self.items.append((-1, 0))
                self.arrays.append((np.dtype(object), -1, 0))
                continue
            off, w = layout.offsets[i], f.vector_width
            if off > pos:
                fmt.append(f"{off - pos}x")
            fmt.append(f"{w}f" if w else _STRUCT_CODES[f.dtype])
            self.items.append((item, w))
            dt = layout.dtypes[i]
            self.arrays.append((dt.base if w else dt, off, w))
            item += w or 1
            pos = off + layout.sizes[i]
        if layout.rowbytes > pos:
            fmt.append(f"{layout.rowbytes - pos}x")
        self.struct = struct.Struct("".join(fmt))
        if self.struct.size != layout.rowbytes:
            raise AssertionError(
                f"record struct of {self.struct.size} bytes, layout {layout.rowbytes}"
            )
        self.layout = layout
        self._plans: dict[tuple[str, ...], tuple[list[tuple[int, int, int]], bool]] = {}

    def bitmap(self, row: tuple) -> int:
        """The valid bitmap of an unpacked record as an int (bit i = field i present)."""
        if self.bitmap_item < 0:
            return 0
        b = row[3]
        return int.from_bytes(b, "little") if self.bitmap_bytes else b

    def plan(self, names: Sequence[str]) -> tuple[list[tuple[int, int, int]], bool]:
        """([(field index, struct item, vector width)] of `names`, whether every one is a plain
        scalar in the record); cached per names (OnlineError for an unknown name)."""
        key = names if isinstance(names, tuple) else tuple(names)
        plan = self._plans.get(key)
        if plan is None:
            idx = [self.layout.field_index(name) for name in key]
            items = [(i, *self.items[i]) for i in idx]
            plan = (items, all(item >= 0 and not w for _, item, w in items))
            if len(self._plans) >= 1024:
                self._plans.clear()  # a bounded cache; dict operations are atomic
            self._plans[key] = plan
        return plan


_DECODERS: dict[int, _Decoder] = {}  # id(layout) -> decoder (which holds its layout)


def _decoder(layout: Layout) -> _Decoder:
    dec = _DECODERS.get(id(layout))
    if dec is None or dec.layout is not layout:
        if len(_DECODERS) >= 256:
            _DECODERS.clear()
        dec = _DECODERS[id(layout)] = _Decoder(layout)  # two threads may both build: same result
    return dec


def feature_arrays(
    layout: Layout, records: np.ndarray, strings: dict[int, Any], present: np.ndarray | None = None
) -> list[pa.Array]:
    """Arrow arrays of every field from records (+ string values per string field: a pa.Array or a
    sequence of str/None); rows where `present` is False are null."""
    cols = []
    for i, f in enumerate(layout.fields):
        valid = layout.valid(records, f.name)
        if present is not None:
            valid &= present
        mask = ~valid
        if f.dtype == "string":
            s = strings[i]
            arr = s if isinstance(s, pa.Array) else pa.array(s, type=pa.large_string())
            if mask.any():
                arr = pc.if_else(pa.array(mask), pa.nulls(len(arr), arr.type), arr)
            cols.append(arr)
            continue
        vals = layout.values(records, f.name)
        if f.vector_width:
            flat = pa.array(vals.reshape(-1), type=pa.float32())
            cols.append(
                pa.FixedSizeListArray.from_arrays(flat, f.vector_width, mask=pa.array(mask))
            )
        else:
            cols.append(pa.array(vals, type=f.arrow_type, mask=mask))
    return cols


class LookupResult:
    """Result of `LSMTree.get_many` for n keys, in the order of the keys."""

    def __init__(
        self, layout: Layout, records: np.ndarray, loc: np.ndarray, sources: Sequence[Any]
    ) -> None:
        """records: (n, rowwords); loc: source index << LOC_SHIFT | position, -1 if not found."""
        self._layout = layout
        self._records = records
        self._loc = loc
        self._sources = sources
        self.found = loc >= 0

    def __len__(self) -> int:
        return len(self.found)

    @property
    def event_ts(self) -> np.ndarray:
        return self._records[:, 0].copy()

    @property
    def created_ts(self) -> np.ndarray:
        return self._records[:, 1].copy()

    @property
    def seq(self) -> np.ndarray:
        return self._records[:, 2].copy()

    @property
    def fields(self) -> list[str]:
        return [f.name for f in self._layout.fields]

    def valid(self, name: str) -> np.ndarray:
        """(n,) bool: False where the feature is null or the key was not found."""
        return self._layout.valid(self._records, name) & self.found

    def values(self, name: str) -> np.ndarray:
        """(n,) values of feature `name` (int32/int64/float32/float64/bool; timestamp as int64 ns;
        float32[N] as (n, N) float32; string as an object array of str/None). Null and not-found
        rows hold 0 (None for strings); use `valid`."""
        i = self._layout.field_index(name)
        f = self._layout.fields[i]
        if f.dtype != "string":
            return self._layout.values(self._records, name)
        out = np.full(len(self.found), None, dtype=object)
        valid = self.valid(name)
        one = self._one_source(f, valid)
        if one is not None:  # the common case: no per-source grouping
            out[valid] = one
            return out
        src = self._loc >> LOC_SHIFT
        for sid in np.unique(src[valid]):
            idx = np.flatnonzero(valid & (src == sid))
            pos = self._loc[idx] & ((1 << LOC_SHIFT) - 1)
            out[idx] = self._sources[sid].string_values(f, pos)
        return out

    def _one_source(self, f: Field, valid: np.ndarray | None) -> list | None:
        """String values of the rows where `valid` (None: every row, all found) when they all come
        from one source, else None (the caller groups by source)."""
        loc = self._loc if valid is None else self._loc[valid]
        if not len(loc):
            return []
        src = loc >> LOC_SHIFT
        sid = int(src[0])
        if not (src == sid).all():
            return None
        return list(self._sources[sid].string_values(f, loc & ((1 << LOC_SHIFT) - 1)))

    def _string_at(self, f: Field, r: int) -> str | None:
        """String field `f` of found row `r`, without values()' per-source grouping (small n)."""
        loc = int(self._loc[r])
        pos = np.array([loc & ((1 << LOC_SHIFT) - 1)], dtype=np.int64)
        return self._sources[loc >> LOC_SHIFT].string_values(f, pos)[0]

    def columns(self, names: Sequence[str]) -> list[tuple[list, list[bool]]]:
        """Features `names` as Python lists, from one decode of the records: per name a pair
        (values, valid) of n-long lists. values hold int / float / bool / str, timestamp as int
        ns, float32[N] as a list of N floats, and None where the row is not valid; valid[i] is
        False where the feature is null or the key was not found (as `valid(name)`). The same
        values as `values(name).tolist()`, without one numpy round per feature: up to
        `COLUMNS_SMALL_N` rows are unpacked row by row with one struct, more by column."""
        dec = _decoder(self._layout)
        plan, scalars = dec.plan(names)
        if len(self.found) <= COLUMNS_SMALL_N:
            return self._columns_rows(dec, plan, scalars)
        return self._columns_numpy(dec, [i for i, _, _ in plan])

    def first_row(self, names: Sequence[str]) -> list[Any]:
        """Features `names` of row 0 as one list of Python values, None where the feature is
        null or the key was not found: what `columns(names)` gives for row 0, from one struct
        unpack of the record and without the per-column lists (the one-entity serving path)."""
        dec = _decoder(self._layout)
        plan, scalars = dec.plan(names)
        if self._loc[0] < 0:
            return [None] * len(plan)
        rec: Any = self._records
        try:
            row = dec.struct.unpack_from(rec, 0)
        except ValueError:  # a strided view: struct reads contiguous buffers only
            contiguous: Any = np.ascontiguousarray(rec)
            row = dec.struct.unpack_from(contiguous, 0)
        b = dec.bitmap(row)
        if scalars:
            return [row[item] if b >> i & 1 else None for i, item, _ in plan]
        out: list[Any] = []
        for i, item, width in plan:
            if not b >> i & 1:
                out.append(None)
            elif item < 0:
                out.append(self._string_at(self._layout.fields[i], 0))
            elif width:
                out.append(list(row[item : item + width]))
            else:
                out.append(row[item])
        return out

    def _columns_rows(
        self, dec: _Decoder, plan: list[tuple[int, int, int]], scalars: bool
    ) -> list[tuple[list, list[bool]]]:
        # Any: numpy's stubs do not declare the buffer protocol that struct reads
        rec: Any = self._records
        if not rec.flags.c_contiguous:
            rec = np.ascontiguousarray(rec)
        unpack, size = dec.struct.unpack_from, dec.struct.size
        found = self.found.tolist()
        if len(found) == 1:  # the serving case: no per-row comprehensions
            return self._columns_row(dec, plan, scalars, unpack(rec, 0) if found[0] else None)
        rows = [unpack(rec, r * size) for r in range(len(found))]
        bitmaps = [dec.bitmap(row) if f else 0 for row, f in zip(rows, found, strict=True)]
        out: list[tuple[list, list[bool]]] = []
        for i, item, width in plan:
            bit = 1 << i
            valid = [bool(b & bit) for b in bitmaps]
            vals: list[Any]
            if item < 0:  # string: outside the record, read per row (n is small here)
                f = self._layout.fields[i]
                vals = [self._string_at(f, r) if ok else None for r, ok in enumerate(valid)]
            elif width:
                end = item + width
                vals = [
                    list(row[item:end]) if ok else None for row, ok in zip(rows, valid, strict=True)
                ]
            else:
                vals = [row[item] if ok else None for row, ok in zip(rows, valid, strict=True)]
            out.append((vals, valid))
        return out

    def _columns_row(
        self,
        dec: _Decoder,
        plan: list[tuple[int, int, int]],
        scalars: bool,
        row: tuple | None,
    ) -> list[tuple[list, list[bool]]]:
        """columns() of one row: `row` is its unpacked record, None when not found."""
        if row is None:
            return [([None], [False]) for _ in plan]
        b = dec.bitmap(row)
        if scalars:
            return [
                ([row[item]], [True]) if b >> i & 1 else ([None], [False]) for i, item, _ in plan
            ]
        out: list[tuple[list, list[bool]]] = []
        for i, item, width in plan:
            if not b >> i & 1:
                out.append(([None], [False]))
            elif item < 0:
                out.append(([self._string_at(self._layout.fields[i], 0)], [True]))
            elif width:
                out.append(([list(row[item : item + width])], [True]))
            else:
                out.append(([row[item]], [True]))
        return out

    def _columns_numpy(self, dec: _Decoder, idx: list[int]) -> list[tuple[list, list[bool]]]:
        rec, n = self._records, len(self.found)
        layout = self._layout
        need_bits = 0
        for i in idx:
            need_bits |= 1 << i
        bb = layout.bitmap_bytes
        need = np.frombuffer(need_bits.to_bytes(bb, "little"), dtype=np.uint8)
        bitmap = np.ndarray((n, bb), np.uint8, rec, HEADER_BYTES, (layout.rowbytes, 1))
        all_valid = bool(self.found.all()) and bool(((bitmap & need) == need).all())
        out: list[tuple[list, list[bool]]] = []
        for i in idx:
            name = layout.fields[i].name
            if all_valid:
                valid_arr = None
                valid = [True] * n
            else:
                valid_arr = self.valid(name)
                valid = valid_arr.tolist()
            if dec.items[i][0] < 0:  # string: None where not valid already
                strs = self._one_source(layout.fields[i], None) if all_valid else None
                out.append((strs if strs is not None else self.values(name).tolist(), valid))
                continue
            dt, offset, width = dec.arrays[i]
            if width:
                view = np.ndarray((n, width), dt, rec, offset, (layout.rowbytes, 4))
            else:
                view = np.ndarray((n,), dt, rec, offset, (layout.rowbytes,))
            vals = view.tolist()
            if valid_arr is not None and not valid_arr.all():
                for r in np.flatnonzero(~valid_arr).tolist():
                    vals[r] = None
            out.append((vals, valid))
        return out

    def to_arrow(self) -> pa.RecordBatch:
        """found, event_timestamp, created_timestamp, seq, then one column per feature (null where
        null or not found)."""
        ts = pa.timestamp("ns", tz="UTC")
        absent = ~self.found
        cols = [
            pa.array(self.found),
            pa.array(self.event_ts, type=ts, mask=absent),
            pa.array(self.created_ts, type=ts, mask=absent),
            pa.array(self.seq, mask=absent),
        ]
        strings = {i: self.values(self._layout.fields[i].name) for i in self._layout.string_fields}
        cols += feature_arrays(self._layout, self._records, strings, self.found)
        names = ["found", "event_timestamp", "created_timestamp", "seq"] + self.fields
        return pa.RecordBatch.from_arrays(cols, names=names)
