"""The offline manifest: which Parquet files exist, per view, and each view's schema and durable_seq.

`<root>/offline/manifest.json` is the single source of truth on reopen: a file not named here
is invisible (and deleted as a leftover). It is replaced atomically (temp, fsync, rename, fsync
dir). `ViewState` and `FileEntry` are immutable values. Reading and writing are pure file
operations; the store serializes writers (its `_io_lock`).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from offline._fsio import TEMP_SUFFIX, publish_bytes
from offline.errors import OfflineCorruptionError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"  # on-disk name, do not change
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    """One Parquet file of a view. `path` is relative to the view directory."""

    path: str
    day: int  # event date of every row, days since 1970-01-01 UTC (the Hive partition)
    rows: int
    bytes: int
    min_seq: int
    max_seq: int
    columns: tuple[str, ...]  # stored columns (older files may lack features added later)

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "day": self.day,
            "rows": self.rows,
            "bytes": self.bytes,
            "min_seq": self.min_seq,
            "max_seq": self.max_seq,
            "columns": list(self.columns),
        }

    @staticmethod
    def from_json(obj: dict) -> FileEntry:
        return FileEntry(
            path=str(obj["path"]),
            day=int(obj["day"]),
            rows=int(obj["rows"]),
            bytes=int(obj["bytes"]),
            min_seq=int(obj["min_seq"]),
            max_seq=int(obj["max_seq"]),
            columns=tuple(obj["columns"]),
        )


@dataclass(frozen=True)
class ViewState:
    """A view's durable state: schema (user columns), keys, durable_seq and live files."""

    schema: pa.Schema
    keys: tuple[str, ...]
    durable_seq: int = 0
    files: tuple[FileEntry, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return {
            "keys": list(self.keys),
            "schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode("ascii"),
            "fields": [f"{f.name}: {f.type}" for f in self.schema],  # for humans only
            "durable_seq": self.durable_seq,
            "files": [f.to_json() for f in self.files],
        }

    @staticmethod
    def from_json(obj: dict) -> ViewState:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(obj["schema"])))
        return ViewState(
            schema=schema,
            keys=tuple(obj["keys"]),
            durable_seq=int(obj["durable_seq"]),
            files=tuple(FileEntry.from_json(f) for f in obj["files"]),
        )


def read_manifest(directory: Path) -> dict[str, ViewState]:
    """Views recorded in `directory/manifest.json`; empty when there is none yet."""
    path = directory / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        obj = json.loads(raw)
        if obj.get("format") != FORMAT_VERSION:
            raise ValueError(f"unknown manifest format {obj.get('format')!r}")
        return {name: ViewState.from_json(v) for name, v in obj["views"].items()}
    except (ValueError, KeyError, TypeError, pa.ArrowInvalid) as exc:
        raise OfflineCorruptionError(
            f"offline manifest {path} is unreadable ({exc}); restore it from a backup "
            "or remove the offline directory to rebuild it from the commit log",
            path=str(path),
        ) from exc


def write_manifest(directory: Path, views: dict[str, ViewState], fsync: bool = True) -> None:
    """Atomically replace the manifest with `views`."""
    obj = {"format": FORMAT_VERSION, "views": {n: v.to_json() for n, v in sorted(views.items())}}
    publish_bytes(directory / MANIFEST_NAME, json.dumps(obj, indent=1).encode(), fsync=fsync)


def check_and_clean(
    directory: Path,
    files: dict[str, tuple[FileEntry, ...]],
    skip: str,
    keep: frozenset[str] | set[str] = frozenset(),
) -> None:
    """Verify the files the manifest names exist; delete temp files and files it does not name.

    `files`: each view's manifest-named files; `skip`: a directory under `directory` that holds
    no views (left untouched); `keep`: paths relative to `directory` (`view/date=.../part-...`)
    not to delete though unnamed (replaced files within their grace period).
    A missing named file raises OfflineCorruptionError.
    """
    for view, entries in files.items():
        for f in entries:
            if not (directory / view / f.path).is_file():
                raise OfflineCorruptionError(
                    f"view {view!r}: Parquet file {directory / view / f.path} "
                    "named by the offline manifest is missing; restore it or remove the "
                    "offline directory to rebuild from the commit log",
                    path=str(directory / view / f.path),
                )
    for leftover in directory.glob(f".*{TEMP_SUFFIX}"):
        leftover.unlink(missing_ok=True)
    for view_dir in directory.iterdir():
        if not view_dir.is_dir() or view_dir.name == skip:
            continue
        named = files.get(view_dir.name)
        live = {f.path for f in named} if named is not None else set()
        for part_dir in view_dir.glob("date=*"):
            for path in part_dir.iterdir():
                rel = f"{part_dir.name}/{path.name}"
                ours = path.name.endswith(TEMP_SUFFIX) or (
                    path.name.startswith("part-") and path.name.endswith(".parquet")
                )
                if ours and rel not in live and f"{view_dir.name}/{rel}" not in keep:
                    log.info("offline: deleting leftover file %s", path)
                    path.unlink(missing_ok=True)
