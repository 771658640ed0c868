"""The in-memory state of one view in OfflineStore: its visible files and its append buffer.

Mutable; every field is guarded by `OfflineStore._lock` (callers hold it, this module never
locks). The durable part (`state()`) is what the manifest records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from offline.manifest import FileEntry, ViewState


@dataclass
class Buffered:
    """One appended batch awaiting flush; `appended_at` is `time.monotonic()` seconds."""

    seq: int
    table: pa.Table
    appended_at: float


@dataclass
class View:
    """Mutable state of one view; every field is guarded by OfflineStore._lock."""

    name: str
    schema: pa.Schema
    keys: tuple[str, ...]
    durable_seq: int = 0
    files: tuple[FileEntry, ...] = ()
    buffer: list[Buffered] = field(default_factory=list)
    buffer_rows: int = 0
    last_seq: int = 0

    def state(self) -> ViewState:
        return ViewState(self.schema, self.keys, self.durable_seq, self.files)

    def due(self, now: float, max_rows: int, max_age_s: float) -> bool:
        """Whether the buffer holds >= `max_rows` rows or a batch older than `max_age_s`."""
        return bool(self.buffer) and (
            self.buffer_rows >= max_rows or now - self.buffer[0].appended_at >= max_age_s
        )
