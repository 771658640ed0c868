"""File-system helpers of the online engine: fsync of a file and of a directory (which makes a
rename or creation in it durable), and a file's size and CRC32C. Stateless; thread-safe.
"""

from __future__ import annotations

import os
from pathlib import Path

import crc32c

__all__ = ["fsync_dir", "fsync_file", "file_crc"]

_CHUNK = 16 << 20  # bytes read per CRC32C update


def fsync_file(path: Path) -> None:
    """Make the contents of the file at `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a rename or creation in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_crc(path: Path) -> tuple[int, int]:
    """(size in bytes, CRC32C) of the file at `path`."""
    crc = 0
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = crc32c.crc32c(chunk, crc)
            size += len(chunk)
    return size, crc
