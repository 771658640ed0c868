"""Compaction: which partitions of a view to merge, and reading one partition's files as one table.

Pure functions over immutable `FileEntry` lists and published (never modified) Parquet files;
the store serializes compaction with flush and publishes the merged file through its manifest.
Safe from any thread.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from offline.errors import OfflineCorruptionError
from offline.manifest import FileEntry
from offline.partition import partition_dir, split_by_day
from offline.schema import pad_to


def partitions_to_compact(
    files: tuple[FileEntry, ...], min_files: int
) -> list[tuple[int, list[FileEntry]]]:
    """Partitions holding >= `min_files` files: (day, files in manifest order), day ascending."""
    by_day: dict[int, list[FileEntry]] = {}
    for f in files:
        by_day.setdefault(f.day, []).append(f)
    return [(day, group) for day, group in sorted(by_day.items()) if len(group) >= min_files]


def read_partition(
    view: str,
    view_dir: Path,
    day: int,
    group: list[FileEntry],
    schema: pa.Schema,
    keys: tuple[str, ...],
) -> pa.Table:
    """The rows of `group` (files of partition `day`), padded to `schema`, as one file's table.

    `schema`: the view's stored schema. An unreadable file raises OfflineCorruptionError.
    """
    try:
        tables = [pad_to(pq.read_table(view_dir / f.path), schema) for f in group]
    except (OSError, pa.ArrowInvalid) as exc:
        raise OfflineCorruptionError(
            f"view {view!r}: cannot read a file of partition {partition_dir(day)} "
            f"for compaction: {exc}",
            path=str(view_dir / partition_dir(day)),
        ) from exc
    ((_, rows),) = split_by_day(pa.concat_tables(tables), keys)
    return rows
