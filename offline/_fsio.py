"""Atomic file publication: write a temp file beside the target, fsync, rename, fsync the dir.

Temp names start with '.' and end with '.tmp', so neither DuckDB's '*.parquet' globs nor Hive
readers (which skip '.' and '_' files) ever see a partial file. Thread-safe (no shared state).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

TEMP_SUFFIX = ".tmp"  # on-disk convention, do not change: reopen deletes these


def temp_path_for(target: Path) -> Path:
    """A unique temp path in the target's directory that no reader will pick up."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")


def fsync_dir(directory: Path) -> None:
    """Make a rename or creation in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(target: Path, write: Callable[[Path], None], fsync: bool = True) -> None:
    """Call `write(temp)` then atomically rename temp to `target`; no partial target ever exists.

    The temp file is removed if `write` fails. The directory is fsynced after the rename
    when `fsync` is set.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(target)
    try:
        write(temp)
        if fsync:
            fsync_file(temp)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(target.parent)


def publish_bytes(target: Path, data: bytes, fsync: bool = True) -> None:
    """Atomically replace `target` with `data`."""

    def write(temp: Path) -> None:
        temp.write_bytes(data)

    publish(target, write, fsync=fsync)
