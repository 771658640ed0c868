"""Manifest: the durable description of a tree — its fields, the live sstables per level, the next
file number and `durable_seq`. One JSON file `MANIFEST`, replaced atomically (temp file, fsync,
rename, fsync of the directory), carrying a CRC32C of its body.

Not thread-safe: the tree serializes writers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import crc32c

from online._fsio import fsync_dir
from online.errors import OnlineCorruptionError

__all__ = ["Manifest", "MANIFEST_NAME"]

MANIFEST_NAME = "MANIFEST"
FORMAT = 1  # on-disk format version of the manifest


@dataclass
class Manifest:
    """fields: [[name, dtype], ...]; levels[0] is L0, newest first; levels[i>0] hold one sorted run
    each; every entry is the dict returned by sstable.write_sstable."""

    fields: list[list[str]]
    levels: list[list[dict[str, Any]]] = field(default_factory=lambda: [[]])
    next_file: int = 1
    durable_seq: int = 0

    def body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "fields": self.fields,
            "levels": self.levels,
            "next_file": self.next_file,
            "durable_seq": self.durable_seq,
        }

    def save(self, directory: Path) -> None:
        body = json.dumps(self.body(), sort_keys=True)
        text = json.dumps({"body": body, "crc32c": crc32c.crc32c(body.encode())})
        tmp = directory / (MANIFEST_NAME + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / MANIFEST_NAME)
        fsync_dir(directory)

    @classmethod
    def load(cls, directory: Path) -> Manifest | None:
        """The stored manifest, or None when the directory has none (a new tree)."""
        path = directory / MANIFEST_NAME
        if not path.exists():
            return None
        try:
            outer = json.loads(path.read_text())
            body = outer["body"]
            if crc32c.crc32c(body.encode()) != outer["crc32c"]:
                raise OnlineCorruptionError(str(path), "CRC32C mismatch: the manifest is corrupt")
            d = json.loads(body)
            if d.get("format") != FORMAT:
                raise OnlineCorruptionError(
                    str(path), f"unknown manifest format {d.get('format')!r}"
                )
            return cls(d["fields"], d["levels"], int(d["next_file"]), int(d["durable_seq"]))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise OnlineCorruptionError(str(path), f"unreadable manifest ({e})") from None

    def live_files(self) -> set[str]:
        return {m["file"] for level in self.levels for m in level}
