"""Scans: every live latest row of a Version in key order, as one Arrow table (`scan`) or as a
stream of key-range tables of bounded size (`scan_chunks`, for whole-view work in bounded memory).

A scan merges the runs of the Version it is given (memtable snapshots and the mapped sstables), so
it sees one consistent state whatever flushes or compactions install meanwhile; the sstables stay
on disk while the Version (held by the caller) names them. `scan_chunks` drops the mapped pages
of the sstable rows it has passed from resident memory (`SSTable.release_rows`) each time it
moves on to the next key range, so a scan of a tree larger than memory keeps its resident set
bounded by one range. Pure functions; thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from online.lookup import feature_arrays
from online.merge import Run, memtable_run, merge_runs, table_run
from online.schema import Layout
from online.sstable import SSTable
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
    sources: list[tuple[Run, SSTable | None]] = [(memtable_run(m), None) for m in version.mems]
    sources += [(table_run(t), t) for _, t in version.tables()]
    return _chunks([s for s in sources if len(s[0].keys)], layout, max(1, rows))


def _chunks(
    sources: list[tuple[Run, SSTable | None]], layout: Layout, rows: int
) -> Iterator[pa.Table]:
    """Merged tables of key ranges of `sources` (a run and its sstable, None for a memtable);
    once the caller asks for the next range, the sstable rows of the last one are released."""
    runs = [r for r, _ in sources]
    ranges = _key_ranges([r.keys for r in runs], rows)
    # every range's positions up front: a binary search per range would fault in (and keep
    # resident) pages far from the scan's position, including those already released
    ends = [_ends(r.keys, ranges) for r in runs]
    for i in range(len(ranges)):
        parts = [_slice_run(r, int(e[i]), int(e[i + 1])) for r, e in zip(runs, ends, strict=True)]
        yield _to_table(layout, *merge_runs([p for p in parts if len(p.keys)], layout))
        for (_, table), e in zip(sources, ends, strict=True):
            if table is not None:
                table.release_rows(int(e[i]), int(e[i + 1]))


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


def _ends(keys: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    """Positions e (len(ranges) + 1) such that range i holds keys[e[i]:e[i + 1]] of the sorted
    `keys`; `ranges` as `_key_ranges` returns them (contiguous, the first from 0, the last to
    no upper bound)."""
    cuts = np.array([lo for lo, _ in ranges[1:]], dtype=np.uint64)
    return np.concatenate([[0], np.searchsorted(keys, cuts, side="left"), [len(keys)]])


def _slice_run(run: Run, a: int, b: int) -> Run:
    """Rows [a, b) of `run`; views, no copy."""
    strings = run.strings
    return Run(run.keys[a:b], run.records[a:b], run.layout, lambda f: strings(f).slice(a, b - a))
