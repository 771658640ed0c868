"""Merging sorted runs into one: the work of compaction and of `scan()`.

A run is the keys, records and string columns of a memtable snapshot or an sstable; runs are given
newest first, and on equal keys the row with the larger (event_ts, created_ts, seq) wins (the
newer run on ties). Runs written with an older schema are converted to the current layout first.
Pure functions; the inputs are only read (a memtable's run is a snapshot taken under its lock).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from online import _merge_kernels as M
from online.memtable import Memtable
from online.schema import Field, Layout
from online.sstable import SSTable

__all__ = ["Run", "merge_runs", "table_run", "memtable_run"]


@dataclass(frozen=True)
class Run:
    """keys: sorted unique uint64; records: (n, rowwords) int64 in `layout`; strings(field) gives the
    large_string column of a string field (n values, all null if the run predates the field)."""

    keys: np.ndarray
    records: np.ndarray
    layout: Layout
    strings: Callable[[Field], pa.Array]


def table_run(t: SSTable) -> Run:
    """The run of an sstable: views of its mapped arrays, no copy."""
    return Run(t.keys, t.records, t.layout, t.string_column)


def memtable_run(mem: Memtable) -> Run:
    """The run of a memtable: a sorted copy of its rows, taken now."""
    keys, recs, strings = mem.sorted_run()
    layout = mem.layout
    return Run(keys, recs, layout, lambda f: strings[layout.index[f.name]])


def merge_runs(runs: Sequence[Run], layout: Layout) -> tuple[np.ndarray, np.ndarray, dict]:
    """Merge `runs` (newest first) into (keys, records in `layout`, {string field index:
    large_string array}); all outputs are new arrays owned by the caller."""
    runs = [r for r in runs if len(r.keys)]
    if not runs:
        empty = np.zeros((0, layout.rowwords), dtype=np.int64)
        strings = {i: pa.array([], type=pa.large_string()) for i in layout.string_fields}
        return np.zeros(0, dtype=np.uint64), empty, strings
    sizes = np.array([len(r.keys) for r in runs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    recs = [r.records if r.layout is layout else layout.convert(r.layout, r.records) for r in runs]
    # the heavy loops run in nogil kernels so that writers keep running during a compaction
    hdr = np.empty((int(offsets[-1]), 3), dtype=np.int64)
    for r, rc in enumerate(recs):
        M.copy_headers(rc, hdr, offsets[r])
    ck = np.asarray(runs[0].keys)
    cg = np.arange(sizes[0], dtype=np.int64)
    for r, run in enumerate(runs[1:], start=1):
        kb = np.asarray(run.keys)
        gb = np.arange(offsets[r], offsets[r + 1], dtype=np.int64)
        outk = np.empty(len(ck) + len(kb), dtype=np.uint64)
        outg = np.empty(len(ck) + len(kb), dtype=np.int64)
        m = M.merge_two(ck, cg, kb, gb, hdr, outk, outg)
        ck, cg = outk[:m], outg[:m]
    out = np.empty((len(ck), layout.rowwords), dtype=np.int64)
    for r in range(len(runs)):
        M.gather_run(cg, offsets[r], offsets[r + 1], recs[r], out)
    strings = {}
    for i in layout.string_fields:
        f = layout.fields[i]
        col = pa.concat_arrays([run.strings(f) for run in runs])
        strings[i] = col.take(pa.array(cg)) if len(runs) > 1 else col
    return np.array(ck), out, strings
