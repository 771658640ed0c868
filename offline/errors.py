"""Errors of the offline store. One base, a few meaningful kinds.

Every message names what was wrong (view, column, file) and what to do about it.
"""

from __future__ import annotations


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


class CorruptionError(OfflineError):
    """The manifest or a Parquet file it names is missing or unreadable; `path` names it."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path
