"""The gather of the position export: matched feature rows, put straight into entity order.

`gather_ordered` takes, per entity row, the position of its matched feature row among the
pieces of a view (-1: none) and returns one array per requested feature, in entity order, null
where nothing matched. Each piece holding a match decodes only the requested feature columns
(text as its stored dictionary indices) and takes its matched rows, in a thread pool; then:
- fixed-width columns (integers, floats, booleans, times) are scattered by numpy into one
  value buffer and one validity mask per column, allocated once for the entity rows: no
  concatenation and no second take;
- other columns (text, lists, vectors, ...) keep the pieces' taken rows, concatenated once
  and put in entity order by one take at the end (text as dictionary indices, then cast).
Memory: the output columns of the entity rows plus the pieces in flight, never a view's rows.
Pure functions; each job writes to distinct destination rows, so the jobs may run in parallel.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from offline._export_io import ordered_map


class Readable(Protocol):
    """A run of a view's rows (export_pipeline.Piece): its first position and its columns."""

    @property
    def base(self) -> int: ...

    def read(self, columns: list[str], as_dictionary: frozenset[str] = ...) -> pa.Table: ...


def _fixed_dtype(t: pa.DataType) -> np.dtype | None:
    """The numpy dtype holding values of `t` as stored in Arrow, for fixed-width types."""
    if pa.types.is_boolean(t):
        return np.dtype(np.bool_)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return np.dtype(t.to_pandas_dtype())
    if pa.types.is_temporal(t) and not pa.types.is_interval(t):
        return np.dtype(f"int{t.bit_width}")
    return None


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


class _Fixed:
    """Output buffers of one fixed-width column: values and validity per entity row."""

    def __init__(self, n: int, field: pa.Field, dtype: np.dtype) -> None:
        self.type = field.type
        self.values = np.zeros(n, dtype)
        self.valid = np.zeros(n, np.bool_)

    def put(self, dest: np.ndarray, local: np.ndarray, arr: pa.Array) -> None:
        """Entity rows `dest` take rows `local` of `arr` (one numpy gather and scatter)."""
        arr = arr.cast(self.type) if arr.type != self.type else arr
        n, off = len(arr), arr.offset
        validity, data = arr.buffers()[0], arr.buffers()[1]
        if self.values.dtype == np.bool_:
            bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
            self.values[dest] = bits[off : off + n].view(np.bool_)[local]
        else:
            self.values[dest] = np.frombuffer(data, self.values.dtype, count=off + n)[off:][local]
        if arr.null_count and validity is not None:
            bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
            self.valid[dest] = bits[off : off + n].view(np.bool_)[local]
        else:
            self.valid[dest] = True

    def array(self) -> pa.Array:
        n = len(self.values)
        if self.values.dtype == np.bool_:
            data = pa.py_buffer(np.packbits(self.values, bitorder="little"))
        else:
            data = pa.py_buffer(self.values)
        validity = None
        if not self.valid.all():
            validity = pa.py_buffer(np.packbits(self.valid, bitorder="little"))
        return pa.Array.from_buffers(self.type, n, [validity, data])


def gather_ordered(
    pool: ThreadPoolExecutor,
    parts: Sequence[Readable],
    positions: np.ndarray,
    features: list[str],
    fields: list[pa.Field],
    ahead: int,
) -> list[pa.Array]:
    """Per field of `fields` (the output of `features`), its values in entity order: entity
    row i takes the feature row at `positions[i]` (a position among `parts`), null for -1."""
    n = len(positions)
    matched = np.flatnonzero(positions >= 0)
    pos = positions[matched]
    bases = np.array([p.base for p in parts], dtype=np.int64)
    piece = np.searchsorted(bases, pos, side="right") - 1
    # grouped by piece (a radix sort of small piece numbers), in entity order within one
    order = np.argsort(piece.astype(np.uint16) if len(parts) < 1 << 16 else piece, kind="stable")
    cuts = np.concatenate(([0], np.cumsum(np.bincount(piece, minlength=len(parts)))))
    dest_all, pos = matched[order], pos[order]
    del matched, order, piece
    jobs = [
        (parts[i], pos[cuts[i] : cuts[i + 1]] - parts[i].base, dest_all[cuts[i] : cuts[i + 1]])
        for i in range(len(parts))
        if cuts[i + 1] > cuts[i]
    ]
    fixed: dict[int, _Fixed] = {}
    for i, fl in enumerate(fields):
        dtype = _fixed_dtype(fl.type)
        if dtype is not None:
            fixed[i] = _Fixed(n, fl, dtype)
    others = [i for i in range(len(fields)) if i not in fixed]
    text = frozenset(features[i] for i in others if _is_text(fields[i].type))

    def take(job: tuple[Readable, np.ndarray, np.ndarray]) -> list[pa.Array]:
        part, local, dest = job
        table = part.read(features, text)
        have = set(table.column_names)
        for i, out in fixed.items():
            if features[i] in have:
                out.put(dest, local, table.column(features[i]).combine_chunks())
        kept = []
        index = pa.array(local) if others else None
        for i in others:
            f, fl = features[i], fields[i]
            if f not in have:  # a feature added after this piece was written
                nulls = pa.nulls(len(local), pa.int32() if f in text else fl.type)
                if f in text:
                    nulls = pa.DictionaryArray.from_arrays(nulls, pa.array([], fl.type))
                kept.append(nulls)
                continue
            col = table.column(f).combine_chunks().take(index)
            if f in text:
                if not pa.types.is_dictionary(col.type):
                    col = pc.dictionary_encode(col.cast(fl.type))
            elif col.type != fl.type:
                col = col.cast(fl.type)
            kept.append(col)
        return kept

    by_column: list[list[pa.Array]] = [[] for _ in others]
    for kept in ordered_map(pool, take, jobs, ahead):
        for slot, col in enumerate(kept):
            by_column[slot].append(col)
    columns: dict[int, pa.Array] = {i: out.array() for i, out in fixed.items()}
    if others:
        rank = np.full(n, -1, dtype=np.int64)
        rank[dest_all] = np.arange(len(dest_all), dtype=np.int64)
        index = pa.array(rank, mask=rank < 0)
        done = pool.map(
            lambda slot: _ordered(by_column[slot], index, fields[others[slot]].type, len(dest_all)),
            range(len(others)),
        )
        for slot, col in enumerate(done):
            columns[others[slot]] = col
            by_column[slot] = []
    return [columns[i] for i in range(len(fields))]


def _ordered(chunks: list[pa.Array], index: pa.Array, typ: pa.DataType, rows: int) -> pa.Array:
    """The concatenated `chunks` (`rows` in all) taken at `index`, as `typ` (text comes as
    dictionaries, which the one concatenation unifies; the take moves only their indices)."""
    if not chunks:
        return pa.nulls(len(index), typ)
    joined = pa.concat_arrays(chunks)
    if len(joined) != rows:
        raise AssertionError(f"gathered {len(joined)} rows, expected {rows}")
    out = joined.take(index)
    return out.cast(typ) if out.type != typ else out
