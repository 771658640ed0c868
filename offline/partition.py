"""Hive partitions by event date: day arithmetic, splitting a batch by day, writing part files.

Layout (on-disk format, do not change):
`<view dir>/date=YYYY-MM-DD/part-<firstseq>-<lastseq>.parquet`, zstd, every row of a file in
that UTC date. Files are published atomically (see `_fsio`). Pure functions, thread-safe.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from offline._fsio import publish
from offline.manifest import FileEntry
from offline.names import EVENT_TS, SEQ_COLUMN

DAY_NS = 86_400 * 1_000_000_000
_EPOCH = dt.date(1970, 1, 1)


def day_of(ts_ns: int) -> int:
    """UTC day number (days since 1970-01-01) of a nanosecond timestamp; floors negatives."""
    return ts_ns // DAY_NS


def partition_dir(day: int) -> str:
    """`date=YYYY-MM-DD` of a day number."""
    return f"date={(_EPOCH + dt.timedelta(days=day)).isoformat()}"


def days_in_range(days: set[int] | list[int], lo_ns: int | None, hi_ns: int | None) -> set[int]:
    """The days among `days` that can hold a timestamp in `[lo_ns, hi_ns]` (None: unbounded)."""
    lo = day_of(lo_ns) if lo_ns is not None else None
    hi = day_of(hi_ns) if hi_ns is not None else None
    return {d for d in days if (lo is None or d >= lo) and (hi is None or d <= hi)}


def split_by_day(table: pa.Table, keys: tuple[str, ...] = ()) -> list[tuple[int, pa.Table]]:
    """Rows of `table` grouped by the UTC day of `event_timestamp`, each day sorted by `keys`.

    Sorting by key makes the point-in-time matcher walk its per-entity state in order
    (sequential instead of random memory access) and shrinks the key column; nothing relies
    on the row order inside a file.
    """
    ts = table.column(EVENT_TS).combine_chunks().cast(pa.int64()).to_numpy()
    days = np.floor_divide(ts, DAY_NS)
    if len(keys) == 1 and table.schema.field(keys[0]).type == pa.int64():
        key = table.column(keys[0]).combine_chunks().to_numpy()
        order = np.lexsort((key, days))
    elif keys:
        with_day = table.select(list(keys)).append_column("__rh_day", pa.array(days))
        sort_keys = [("__rh_day", "ascending")] + [(k, "ascending") for k in keys]
        order = pc.sort_indices(with_day, sort_keys=sort_keys).to_numpy()
    else:
        order = np.argsort(days, kind="stable")
    sorted_days = days[order]
    starts = np.flatnonzero(np.diff(sorted_days)) + 1
    bounds = np.concatenate(([0], starts, [len(sorted_days)]))
    taken = table.take(pa.array(order))
    return [
        (int(sorted_days[a]), taken.slice(a, b - a))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def write_part(
    view_dir: Path,
    day: int,
    table: pa.Table,
    *,
    compression: str,
    compression_level: int,
    row_group_rows: int,
    fsync: bool,
    taken: set[str],
) -> FileEntry:
    """Publish `table` (rows of one day, `_seq` column included) as a new part file.

    `taken` holds relative paths that must not be reused (live or awaiting deletion); the
    returned entry's path is added to it. The file is complete and durable when this returns.
    """
    seqs = table.column(SEQ_COLUMN)
    min_seq = int(pc.min(seqs).as_py())
    max_seq = int(pc.max(seqs).as_py())
    rel = f"{partition_dir(day)}/part-{min_seq}-{max_seq}.parquet"
    n = 1
    while rel in taken or (view_dir / rel).exists():
        rel = f"{partition_dir(day)}/part-{min_seq}-{max_seq}-{n}.parquet"
        n += 1
    taken.add(rel)
    target = view_dir / rel

    def write(temp: Path) -> None:
        pq.write_table(
            table,
            temp,
            compression=compression,
            compression_level=compression_level,
            row_group_size=row_group_rows,
        )

    publish(target, write, fsync=fsync)
    return FileEntry(
        path=rel,
        day=day,
        rows=table.num_rows,
        bytes=os.path.getsize(target),
        min_seq=min_seq,
        max_seq=max_seq,
        columns=tuple(table.column_names),
    )
