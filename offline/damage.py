"""Finding the damaged Parquet file behind a failed query, on the error path only.

DuckDB reports some damage inside a Parquet file (a garbled page header or compressed page:
"Variable-length int over 10 bytes", a decompression failure) without naming the file. When a
query over our own files fails that way, `find_damaged` checks the files it read one by one:
size against the manifest, then the footer (row count against the manifest), then a full
decode, one row group at a time (memory bounded by a row group), within a time budget. The
first file that fails is the damaged one.

Pure functions over files; thread-safe. Never called on a successful query.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

__all__ = ["Candidate", "could_be_damage", "find_damaged"]

# Seconds a search may spend decoding files before it gives up (the query's own error is then
# reported as it is); the footers and sizes of every file are always checked.
CHECK_BUDGET_S = 60.0

# DuckDB errors that never come from a file's bytes: the search is not worth running.
_NOT_DAMAGE = (
    duckdb.OutOfMemoryException,
    duckdb.InterruptException,
    duckdb.ParserException,
    duckdb.BinderException,
    duckdb.CatalogException,
)


@dataclass(frozen=True)
class Candidate:
    """A file a failed query read: its path and what the manifest says of it (None: unknown)."""

    path: Path
    rows: int | None = None
    bytes: int | None = None


def could_be_damage(exc: BaseException) -> bool:
    """Whether `exc`, raised by a query over our files, may come from a damaged file."""
    if isinstance(exc, _NOT_DAMAGE):
        return False
    return isinstance(exc, duckdb.Error | pa.ArrowException | OSError)


def find_damaged(
    files: Iterable[Candidate], budget_s: float = CHECK_BUDGET_S
) -> tuple[Path, str] | None:
    """(path, what is wrong) of the first damaged file of `files`, or None when every file
    checked reads whole (or the decoding budget ran out first)."""
    todo = list(files)
    for c in todo:  # cheap checks first: a truncated or unreadable footer shows at once
        problem = _footer_problem(c)
        if problem is not None:
            return c.path, problem
    deadline = time.monotonic() + budget_s
    for c in todo:
        if time.monotonic() > deadline:
            log.warning("offline: damage search stopped after %.0fs (budget)", budget_s)
            return None
        problem = _decode_problem(c.path)
        if problem is not None:
            return c.path, problem
    return None


def _footer_problem(c: Candidate) -> str | None:
    try:
        size = c.path.stat().st_size
        if c.bytes is not None and size != c.bytes:
            return f"size {size} bytes, the manifest says {c.bytes}"
        meta = pq.read_metadata(c.path)
    except (OSError, pa.ArrowException) as e:
        return f"unreadable Parquet footer ({e})"
    if c.rows is not None and meta.num_rows != c.rows:
        return f"{meta.num_rows} rows, the manifest says {c.rows}"
    return None


def _decode_problem(path: Path) -> str | None:
    try:
        with pq.ParquetFile(path) as f:
            for g in range(f.num_row_groups):
                f.read_row_group(g)
    except (OSError, pa.ArrowException) as e:
        return f"Parquet data does not decode ({e})"
    return None
