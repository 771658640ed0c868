"""Errors of the offline store: one base, a few meaningful kinds, and the mapping of DuckDB
failures onto them (`query_error`).

Every message names what was wrong (view, column, file) and what to do about it. Stateless;
thread-safe.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa


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


def query_error(exc: Exception) -> OfflineError:
    """A DuckDB failure reading our files is corruption (DuckDB names the file); else a bug."""
    text = str(exc).lower()
    unreadable = isinstance(exc, duckdb.IOException) or (
        isinstance(exc, duckdb.InvalidInputException | pa.ArrowInvalid)
        and ("parquet" in text or "file" in text)
    )
    if unreadable:
        return OfflineCorruptionError(f"offline query could not read its files: {exc}")
    return OfflineError(f"offline query failed: {exc}")
