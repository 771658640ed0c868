"""Errors of the offline store: one base, a few meaningful kinds, and the mapping of DuckDB
failures onto them (`query_error`).

Every message names what was wrong (view, column, file) and what to do about it. Stateless;
thread-safe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from offline.damage import Candidate, could_be_damage, find_damaged

if TYPE_CHECKING:
    from offline.source import ViewSnapshot


class OfflineError(Exception):
    """Base of every error the offline store raises on purpose."""


class SchemaMismatchError(OfflineError):
    """A schema, batch or entity table does not match what the view (or the join) needs."""


class UnknownViewError(OfflineError):
    """A view name that was never registered."""

    def __init__(self, view: str) -> None:
        super().__init__(f"unknown offline view {view!r}: register it with register_view() first")
        self.view = view


class InvalidNameError(OfflineError):
    """A view, key or feature name is not an identifier (`^[A-Za-z_][A-Za-z0-9_]*$`) or reserved."""


class OfflineCorruptionError(OfflineError):
    """The manifest or a Parquet file it names is missing or unreadable; `path` names it."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


def query_error(exc: Exception, files: Iterable[Candidate] = ()) -> OfflineError:
    """A DuckDB failure reading our files is corruption; else a bug.

    `files`: the Parquet files the query read. When DuckDB does not say which file it could not
    read (damage inside a file often reads as a plain decoding error), they are checked one by
    one (offline.damage) and a damaged one is named in the OfflineCorruptionError.
    """
    text = str(exc).lower()
    unreadable = isinstance(exc, duckdb.IOException) or (
        isinstance(exc, duckdb.InvalidInputException | pa.ArrowInvalid)
        and ("parquet" in text or "file" in text)
    )
    files = list(files)
    if files and could_be_damage(exc):
        found = find_damaged(files)
        if found is not None:
            path, problem = found
            return OfflineCorruptionError(
                f"offline Parquet file {str(path)!r} is damaged: {problem} (the query failed "
                f"with: {exc})",
                path=str(path),
            )
    if unreadable:
        named = _NAMED_FILE.search(str(exc))
        return OfflineCorruptionError(
            f"offline query could not read its files: {exc}",
            path=named.group(1) if named else None,
        )
    return OfflineError(f"offline query failed: {exc}")


# How DuckDB names the file it failed to read: `Failed to read file "<path>": <problem>`.
_NAMED_FILE = re.compile(r'file "([^"]+)"')


@contextmanager
def naming_damage(snaps: Iterable[ViewSnapshot]) -> Iterator[None]:
    """Around a query over `snaps`: an OfflineError it raises from a DuckDB or Arrow failure
    becomes an OfflineCorruptionError naming the damaged file, when one of theirs is."""
    try:
        yield
    except OfflineError as e:
        if isinstance(e, OfflineCorruptionError) and e.path is not None:
            raise  # already names its file
        cause = e.__cause__
        if not isinstance(cause, Exception) or not could_be_damage(cause):
            raise
        found = query_error(cause, snapshot_files(snaps))
        if isinstance(found, OfflineCorruptionError) and found.path is not None:
            raise found from cause
        raise


def snapshot_files(snaps: Iterable[ViewSnapshot]) -> list[Candidate]:
    """The Parquet files of `snaps`, as candidates for `query_error`."""
    return [Candidate(s.view_dir / f.path, f.rows, f.bytes) for s in snaps for f in s.files]
