"""VersionSet: the tree's current Version and the Manifest that describes it on disk (LevelDB's
VersionSet). Every change of the sstables goes through `log_and_apply(edit)`: the edit is applied
to a copy of the manifest, which is saved (fsynced) first, and only then is the new Version
installed and `durable_seq` published, so a reader never sees a state the disk does not hold.

Thread-safety: `_lock` serializes manifest saves, Version installs and file numbers; it is held
for one manifest save at most. `current` and `durable_seq` are read without it (each is one
attribute load of an immutable object).
"""

from __future__ import annotations

import threading
from pathlib import Path

from online.manifest import Manifest
from online.memtable import Memtable
from online.version import Version
from online.version_edit import VersionEdit

__all__ = ["VersionSet"]


class VersionSet:
    """The current Version of the tree in `directory` and its manifest."""

    def __init__(self, directory: Path, manifest: Manifest, version: Version) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._manifest = manifest  # GUARDED_BY(_lock)
        self.current = version  # written under _lock; read without it
        # highest seq held by the sstables of the saved manifest; written under _lock, after the
        # save: callers trim their own logs by it, so it never runs ahead of the disk
        self.durable_seq = manifest.durable_seq

    def new_file_number(self) -> int:
        """A file number never used before in this directory (saved with the next manifest)."""
        with self._lock:
            n = self._manifest.next_file
            self._manifest.next_file += 1
            return n

    def log_and_apply(self, edit: VersionEdit) -> Version:
        """Save the manifest with `edit` applied, then install the edited Version; returns it.
        If the save fails, nothing changes in memory."""
        with self._lock:
            manifest = edit.apply_to_manifest(self._manifest)
            manifest.save(self.directory)
            self._manifest = manifest
            self.durable_seq = manifest.durable_seq
            self.current = edit.apply_to_version(self.current)
            return self.current

    def add_memtable(self, mem: Memtable) -> None:
        """Install a Version with `mem` as the active memtable, in front of the others (the
        caller has frozen the previous active one)."""
        with self._lock:
            v = self.current
            self.current = Version((mem,) + v.mems, v.levels, v.bloom_last_level)

    def release(self, mem: Memtable) -> None:
        """Install an empty Version (one empty memtable `mem`, no sstable): the tree is closed
        and drops its references to its files."""
        with self._lock:
            self.current = Version((mem,), ((),), self.current.bloom_last_level)
