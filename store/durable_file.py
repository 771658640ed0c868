"""Durable small files: the one way store/ and cluster/ write a file that must survive a crash.

`write_text_durably(path, text)` writes a temp file beside `path`, fsyncs it, renames it over
`path` and fsyncs the directory: after it returns the new content is durable, and a crash at any
point leaves either the old file or the new one, never a mix. `fsync_dir` makes a rename or a
create in a directory durable. The online and offline engines keep their own copies
(online/_fsio.py, offline/_fsio.py): the layering forbids them to import store/.

Stateless; safe from any thread (two writers of the same path must serialize themselves).
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """fsync a directory, making the creates, renames and unlinks in it durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, path: Path) -> None:
    """Rename the written, fsynced file `tmp` over `path` and make the rename durable."""
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_text_durably(path: Path, text: str, tmp_suffix: str = ".tmp") -> None:
    """Replace `path`'s content with `text` atomically and durably (temp file, fsync, rename,
    directory fsync). The temp file is `path` with its suffix replaced by `tmp_suffix`."""
    tmp = path.with_suffix(tmp_suffix)
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    replace_durably(tmp, path)
