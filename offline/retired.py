"""Retired files: Parquet files the manifest no longer names, kept on disk for a grace period.

A listed snapshot (`OfflineStore.snapshot_files`) hands absolute paths to engines rickhouse does
not control (pyarrow, Polars, Ray, Spark); they cannot pin files. So a file that compaction or
retention replaces is not deleted at once: its replaced-at time (wall clock, Unix seconds) is
recorded durably in `<root>/offline/retired.json` BEFORE the manifest stops naming it, and the
file is deleted only once `grace_s` has passed (and no query of this process pins it).

Invariants:
- An entry is recorded before the manifest write that drops its file, so a crash in between
  leaves an entry whose file the manifest still names: such entries are dropped on reopen.
- The record is replaced atomically (temp, fsync, rename), like the manifest.
Thread-safety: every method takes the record's own lock; file I/O happens under it (writes
are rare: one per compaction, retention drop or batch of deletions).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from offline._fsio import publish_bytes
from offline.errors import OfflineCorruptionError
from offline.manifest import FileEntry

log = logging.getLogger(__name__)

RETIRED_NAME = "retired.json"  # on-disk name under <root>/offline, do not change
FORMAT_VERSION = 1


class RetiredFiles:
    """The durable record {path relative to the offline dir: replaced-at Unix seconds}."""

    def __init__(self, directory: Path, fsync: bool = True):
        self.directory = directory
        self._path = directory / RETIRED_NAME
        self._fsync = fsync
        self._lock = threading.Lock()
        self._at: dict[str, float] = self._load()  # GUARDED_BY(_lock)

    def _load(self) -> dict[str, float]:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            obj = json.loads(raw)
            if obj.get("format") != FORMAT_VERSION:
                raise ValueError(f"unknown format {obj.get('format')!r}")
            return {str(k): float(v) for k, v in obj["files"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OfflineCorruptionError(
                f"offline record of retired files {self._path} is unreadable ({exc}); delete "
                "it (files it names are then deleted on the next open, ending their grace "
                "period early)",
                path=str(self._path),
            ) from exc

    def _write(self) -> None:
        obj = {"format": FORMAT_VERSION, "files": dict(sorted(self._at.items()))}
        publish_bytes(self._path, json.dumps(obj, indent=1).encode(), fsync=self._fsync)

    def add(self, paths: Iterable[str], now: float) -> None:
        """Record `paths` (relative to the offline dir) as replaced at `now`; durable on return.

        A path already recorded keeps its earlier time."""
        with self._lock:
            fresh = {p: now for p in paths if p not in self._at}
            if not fresh:
                return
            self._at.update(fresh)
            self._write()

    def forget(self, paths: Iterable[str]) -> None:
        """Drop `paths` from the record (deleted, or named by the manifest again)."""
        with self._lock:
            gone = [p for p in paths if p in self._at]
            if not gone:
                return
            for p in gone:
                del self._at[p]
            self._write()

    def retired_at(self, path: str) -> float | None:
        with self._lock:
            return self._at.get(path)

    def items(self) -> list[tuple[str, float]]:
        """Every (path, replaced-at) pair, sorted by path."""
        with self._lock:
            return sorted(self._at.items())

    def reopen(
        self, directory: Path, named: Mapping[str, tuple[FileEntry, ...]], grace_s: float
    ) -> set[str]:
        """On open: the recorded paths to keep (within grace, on disk, not named by the
        manifest). Forgets the others: paths the manifest names (a crash came before its
        write), files already gone, and files past grace (the caller deletes them as leftovers).
        `named`: each view's manifest-named files; `directory`: the offline dir."""
        now = time.time()
        live = {f"{view}/{f.path}" for view, files in named.items() for f in files}
        keep = {
            p
            for p in self.within_grace(now, grace_s)
            if p not in live and (directory / p).is_file()
        }
        self.forget([p for p, _ in self.items() if p not in keep])
        return keep

    def within_grace(self, now: float, grace_s: float) -> set[str]:
        """Recorded paths whose grace period has not ended at `now`."""
        with self._lock:
            return {p for p, at in self._at.items() if now < at + grace_s}


def reapable(
    obsolete: set[Path],
    live: set[Path],
    refs: Counter[Path],
    retired: RetiredFiles,
    now: float,
    grace_s: float,
) -> tuple[list[Path], float]:
    """The obsolete files (absolute paths) that may be deleted at `now`, and the time to look
    again. A file may go once its grace has ended (no record: at once), no view names it
    (`live`) and no query pins it (`refs`). Caller holds the lock guarding these sets."""
    dead: list[Path] = []
    due = float("inf")
    for p in obsolete:
        at = retired.retired_at(str(p.relative_to(retired.directory)))
        end = (at if at is not None else 0.0) + grace_s
        if now < end:
            due = min(due, end)
        elif p in live or refs[p] > 0:
            due = now  # named again or pinned: look again at the next reap
        else:
            dead.append(p)
    return dead, due
