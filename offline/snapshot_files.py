"""A published snapshot of one view: the Parquet files another engine reads, and how to read them.

`describe_snapshot` turns a view's manifest-named files (never a directory glob: temp files and
replaced files within their grace period may sit beside them) into a plain JSON-able dict: the
absolute paths, the stored schema, the row filter an `as_of_seq` snapshot needs, how the
timestamps are encoded and the version order that defines "latest". Pure function; safe from
any thread.

Contract of a listing (what README's "Reading the offline store from other engines" relies on):
- `files` name every file that can hold a row with `_seq <= as_of_seq`; rows of later seqs may
  share a file with earlier ones (compaction merges them), so a reader applies `row_filter`.
- Older files may lack features added later: read with a schema merge (pyarrow.dataset with
  `schema=`, Polars `missing_columns="insert"`, Spark `mergeSchema`): missing values are null.
- Timestamps (`event_timestamp`, `created_timestamp`, timestamp features) are Parquet
  TIMESTAMP(NANOS, UTC): int64 nanoseconds since the Unix epoch.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pyarrow as pa

from offline.manifest import FileEntry, ViewState
from offline.names import CREATED_TS, EVENT_TS, ROW_COLUMN, SEQ_COLUMN
from offline.partition import partition_dir
from offline.schema import stored_schema

# The order of two rows of one entity: the larger tuple is the later version ("latest").
VERSION_ORDER = (EVENT_TS, CREATED_TS, SEQ_COLUMN, ROW_COLUMN)

TIMESTAMP_ENCODING = (
    "Parquet TIMESTAMP(NANOS, isAdjustedToUTC=true): int64 nanoseconds since the Unix epoch, "
    "UTC; Arrow timestamp[ns, tz=UTC]. pyarrow, Polars and Ray read them as UTC timestamps; "
    "Spark cannot read nanosecond timestamps: set spark.sql.legacy.parquet.nanosAsLong=true "
    "and they read as bigint nanoseconds"
)


def snapshot_file_entries(files: tuple[FileEntry, ...], as_of_seq: int) -> list[FileEntry]:
    """The files that can hold a row with `_seq <= as_of_seq`, in manifest order."""
    return [f for f in files if f.min_seq <= as_of_seq]


def describe_snapshot(
    state: ViewState,
    view_dir: Path,
    as_of_seq: int,
    complete_to_seq: int,
    grace_s: float,
) -> dict:
    """The listing of the view in `view_dir` (absolute; its name is the view's) as of
    `as_of_seq`; see the module docstring for its contract.

    `state`: the view's schema, keys and manifest-named files; `complete_to_seq`: every row of
    the view with `_seq <= complete_to_seq` is in `state.files` (none is only in memory);
    `grace_s`: how long a listed file stays on disk after it is replaced.
    """
    view, schema, keys, files = view_dir.name, state.schema, state.keys, state.files
    stored = stored_schema(schema)
    chosen = snapshot_file_entries(files, as_of_seq)
    timestamp_columns = [f.name for f in stored if pa.types.is_timestamp(f.type)]
    return {
        "view": view,
        "as_of_seq": as_of_seq,
        "complete_to_seq": complete_to_seq,
        "keys": list(keys),
        "files": [
            {
                "path": str(view_dir / f.path),
                "date": partition_dir(f.day).removeprefix("date="),
                "rows": f.rows,
                "bytes": f.bytes,
                "min_seq": f.min_seq,
                "max_seq": f.max_seq,
                "columns": list(f.columns),
            }
            for f in chosen
        ],
        "rows": sum(f.rows for f in chosen),
        "schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in stored],
        "arrow_schema": base64.b64encode(stored.serialize().to_pybytes()).decode("ascii"),
        "row_filter": f"{SEQ_COLUMN} <= {as_of_seq}",
        "filter_needed": any(f.max_seq > as_of_seq for f in chosen),
        "version_order": list(VERSION_ORDER),
        "timestamps": {"columns": timestamp_columns, "encoding": TIMESTAMP_ENCODING},
        "grace_s": grace_s,
    }


def listing_schema(listing: dict) -> pa.Schema:
    """The Arrow schema of a listing (every stored column, `_seq` and `_row` included)."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(listing["arrow_schema"])))
