"""Errors of the FeatureStore. One base, a few meaningful kinds; `app/` maps them to HTTP in one place.

Every message names what was wrong (view, column, row, feature) and what to do about it.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the FeatureStore raises on purpose."""


class DefinitionError(StoreError):
    """Definitions are malformed, or a change to them is refused (type change, key change, drop)."""


class ValidationError(StoreError):
    """An ingested batch (or request input) is malformed; nothing of it was written.

    Attributes name the place when known: `view`, `column`, `row` (0-based row of the batch).
    """

    def __init__(
        self,
        message: str,
        *,
        view: str | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        super().__init__(message)
        self.view = view
        self.column = column
        self.row = row


class EntityKeyError(ValidationError):
    """Entity input is missing a join key, has unequal lists, or a key of the wrong type."""


class NotFoundError(StoreError):
    """A named object does not exist. Subclasses say which kind; `name` is the unknown name."""

    kind = "object"

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"unknown {self.kind} {name!r}")
        self.name = name


class UnknownViewError(NotFoundError):
    kind = "feature view"


class UnknownFeatureError(NotFoundError):
    kind = "feature"


class UnknownFeatureServiceError(NotFoundError):
    kind = "feature service"


class UnknownPushSourceError(NotFoundError):
    kind = "push source"


class ConflictError(StoreError):
    """A concurrent change overtook the call (an apply redefined the view an ingest was
    converted for); nothing of it was written, and the same call may simply be retried."""


class WriterLockedError(StoreError):
    """Another process holds the writer lock of this store root."""


class CorruptionError(StoreError):
    """A file of the store is damaged in a way recovery cannot repair.

    The message names the file and what to do; `path` is that file when known.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class EngineError(StoreError):
    """The online or offline engine failed or refused an operation for a reason other than a
    damaged file (an I/O error, a broken invariant); the message names the engine and the reason.
    """


class ClosedError(StoreError):
    """The FeatureStore was closed."""


def short_repr(value: object, limit: int = 80) -> str:
    """repr(value) for an error message, cut after `limit` characters (hostile input can be huge)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
