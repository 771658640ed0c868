"""Errors of the online engine: one base class and the few kinds a caller can act on."""

from __future__ import annotations

__all__ = ["OnlineError", "OnlineCorruptionError", "SchemaMismatchError", "ClosedError"]


class OnlineError(Exception):
    """Base of every error raised by `online/`."""


class OnlineCorruptionError(OnlineError):
    """A file of the tree is missing, truncated or fails its checksum; the message names the file."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


class SchemaMismatchError(OnlineError):
    """The fields given to `LSMTree` differ from the stored ones other than by appending."""


class ClosedError(OnlineError):
    """The tree was closed; open it again to use it."""
