"""Scans: every live latest row of a Version in key order, as one Arrow table (`scan`) or as a
stream of key-range tables of bounded size (`scan_chunks`, for whole-view work in bounded memory).

A scan merges the runs of the Version it is given (memtable snapshots and the mapped sstables), so
it sees one consistent state whatever flushes or compactions install meanwhile; the sstables stay
on disk while the Version (held by the caller) names them. Pure functions; thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from online.lookup import feature_arrays
from online.merge import Run, memtable_run, merge_runs, table_run
from online.schema import Layout
from online.version import Version

__all__ = ["scan", "scan_chunks", "SCAN_COLUMNS"]

SCAN_COLUMNS = ["key", "event_timestamp", "created_timestamp", "seq"]  # then the features
_SAMPLES_PER_RANGE = 16  # keys sampled per key range to place its bounds


def scan(version: Version, layout: Layout) -> pa.Table:
    """All live latest rows of `version` sorted by key: key, event_timestamp, created_timestamp,
    seq, then the fields of `layout`."""
    return _to_table(layout, *merge_runs(_runs(version), layout))


def scan_chunks(version: Version, layout: Layout, rows: int) -> Iterator[pa.Table]:
    """The rows of `scan(version, layout)`, in key order, as tables of about `rows` rows each (one
    key range per table): memory is bounded by `rows` (plus the memtables' snapshots, taken now,
    so later writes are not seen), whatever the size of the tree."""
    runs = [r for r in _runs(version) if len(r.keys)]
    return _chunks(runs, layout, max(1, rows))


def _chunks(runs: list[Run], layout: Layout, rows: int) -> Iterator[pa.Table]:
    for lo, hi in _key_ranges([r.keys for r in runs], rows):
        parts = [_slice_run(r, lo, hi) for r in runs]
        yield _to_table(layout, *merge_runs([p for p in parts if len(p.keys)], layout))


def _runs(version: Version) -> list[Run]:
    """Runs of every memtable and sstable of `version`, newest first."""
    return [memtable_run(m) for m in version.mems] + [table_run(t) for _, t in version.tables()]


def _to_table(layout: Layout, keys: np.ndarray, recs: np.ndarray, strings: dict) -> pa.Table:
    ts = pa.timestamp("ns", tz="UTC")
    cols = [
        pa.array(keys, type=pa.uint64()),
        pa.array(recs[:, 0], type=ts),
        pa.array(recs[:, 1], type=ts),
        pa.array(recs[:, 2], type=pa.int64()),
    ] + feature_arrays(layout, recs, strings)
    return pa.Table.from_arrays(cols, names=SCAN_COLUMNS + [f.name for f in layout.fields])


def _key_ranges(runs: list[np.ndarray], rows: int) -> list[tuple[int, int]]:
    """Half-open key ranges [lo, hi) covering every key of the sorted `runs`, each holding about
    `rows` keys in all (fewer where runs overlap: duplicates are counted once per run). hi = -1
    means no upper bound."""
    total = sum(len(k) for k in runs)
    if total == 0:
        return []
    nranges = -(-total // rows)
    if nranges == 1:
        return [(0, -1)]
    step = max(1, total // (nranges * _SAMPLES_PER_RANGE))
    sample = np.sort(np.concatenate([k[::step] for k in runs]))
    cuts = np.unique(sample[np.linspace(0, len(sample), nranges + 1)[1:-1].astype(np.int64)])
    bounds = [0, *(int(c) for c in cuts if c > 0), -1]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _slice_run(run: Run, lo: int, hi: int) -> Run:
    """The part of `run` with lo <= key < hi (hi = -1: no upper bound); views, no copy."""
    a = int(np.searchsorted(run.keys, np.uint64(lo), side="left"))
    b = len(run.keys) if hi < 0 else int(np.searchsorted(run.keys, np.uint64(hi), side="left"))
    strings = run.strings
    return Run(run.keys[a:b], run.records[a:b], run.layout, lambda f: strings(f).slice(a, b - a))
