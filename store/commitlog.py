"""The commit log: every ingested batch, framed and fsynced before it is acknowledged.

Segments are files `<dir>/<firstseq:020d>.log`. A record is a header (RECORD_HEADER) followed by
the payload: a u16 length and the UTF-8 view name, then the batch as an Arrow IPC stream. The CRC
covers the seq bytes and the payload, so a torn write, a flipped bit or a header pointing past
the end of the file is detected. Seqs are strictly increasing across records and segments.

`recover()` reads every segment once on open; a bad record in the *last* segment starts the torn
tail, which is cut (file truncated, warning logged); a bad record in an earlier segment raises
CorruptionError, because records after it were acknowledged. `append` writes without syncing and
`sync(seq)` makes everything up to `seq` durable with one fdatasync shared by all waiting
callers (group commit). `release` deletes segments whose records both stores hold durably.

Thread-safety: `append`, `release` and `close` must be serialized by the caller (the write
path's sequencing lock); `sync`, `stats` and `has_inactive` may be called from any thread.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import crc32c
import pyarrow as pa

from store.durable_file import fsync_dir
from store.errors import CorruptionError

log = logging.getLogger(__name__)

RECORD_HEADER = struct.Struct(
    "<IIQ"
)  # payload length, crc32c(seq + payload), seq — on-disk format, do not change
SEQ_BYTES = struct.Struct("<Q")  # the seq as the CRC covers it — on-disk format, do not change
VIEW_NAME_LEN = struct.Struct(
    "<H"
)  # length of the view name opening the payload — on-disk format, do not change
SEGMENT_SUFFIX = ".log"  # segment file name: f"{firstseq:020d}.log" — on-disk format, do not change
MAX_PAYLOAD = (1 << 32) - 1


@dataclass(frozen=True)
class Record:
    """One committed batch as read back from the log."""

    seq: int
    view: str
    payload: memoryview  # Arrow IPC stream bytes

    def table(self) -> pa.Table:
        return pa.ipc.open_stream(pa.py_buffer(self.payload)).read_all()


@dataclass(frozen=True)
class RecordSpan:
    """Where a valid record lies in a segment (for recovery and tests)."""

    seq: int
    view: str
    start: int
    end: int


def encode_payload(view: str, table: pa.Table) -> list[bytes | pa.Buffer]:
    """The payload pieces of a record: view name length and bytes, then the IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    name = view.encode()
    return [VIEW_NAME_LEN.pack(len(name)) + name, sink.getvalue()]


def scan_segment(data: bytes | memoryview) -> tuple[list[RecordSpan], int]:
    """Valid records from the start of a segment's bytes, and the offset where validity ends."""
    mv = memoryview(data)
    spans: list[RecordSpan] = []
    pos = 0
    n = len(mv)
    prev_seq = 0
    while pos + RECORD_HEADER.size <= n:
        length, crc, seq = RECORD_HEADER.unpack_from(mv, pos)
        body = pos + RECORD_HEADER.size
        end = body + length
        if end > n or length < VIEW_NAME_LEN.size or seq <= prev_seq:
            break
        if crc32c.crc32c(mv[body:end], crc32c.crc32c(SEQ_BYTES.pack(seq))) != crc:
            break
        (name_len,) = VIEW_NAME_LEN.unpack_from(mv, body)
        if VIEW_NAME_LEN.size + name_len > length:
            break
        name_start = body + VIEW_NAME_LEN.size
        view = bytes(mv[name_start : name_start + name_len]).decode("utf-8", "replace")
        spans.append(RecordSpan(seq, view, pos, end))
        prev_seq = seq
        pos = end
    return spans, pos


class CommitLog:
    """Segmented, CRC-framed, group-committed log of ingested batches."""

    def __init__(self, directory: str | Path, segment_bytes: int = 64 << 20) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        # "caller" below: the serialization of append/release/close the caller provides.
        # segment path -> {view: highest seq of the view in it}
        self._segments: dict[Path, dict[str, int]] = {}  # GUARDED_BY(caller)
        self._sync_lock = threading.Lock()
        self._fd = -1  # GUARDED_BY(caller) to write; replaced under caller and _sync_lock
        self._active: Path | None = None  # GUARDED_BY(caller) and _sync_lock (rotation)
        self._active_size = 0  # GUARDED_BY(caller)
        self.last_seq = 0  # GUARDED_BY(caller)
        self._written_seq = 0  # GUARDED_BY(caller); read by sync under _sync_lock
        self._synced_seq = 0  # GUARDED_BY(_sync_lock); read without it (monotonic int)
        self._closed = False  # GUARDED_BY(caller)

    @property
    def has_inactive(self) -> bool:
        """More than the active segment exists: `release` may have something to delete."""
        return len(self._segments) > 1

    def segment_paths(self) -> list[Path]:
        return sorted(self.dir.glob("*" + SEGMENT_SUFFIX))

    def recover(self) -> Iterator[Record]:
        """Yield every valid record in seq order, cutting a torn tail; then open for append.

        Must be exhausted before `append`. Raises CorruptionError for damage before the tail.
        """
        paths = self.segment_paths()
        for i, path in enumerate(paths):
            data = path.read_bytes()
            spans, valid_end = scan_segment(data)
            if valid_end < len(data):
                if i != len(paths) - 1:
                    raise CorruptionError(
                        f"commit log segment {str(path)!r} is damaged at byte {valid_end} and "
                        "later segments exist: acknowledged batches would be lost. Restore the "
                        "file from a backup or move it aside knowingly."
                    )
                log.warning(
                    "commit log %s: cutting %d bytes of torn or corrupt tail at byte %d",
                    path,
                    len(data) - valid_end,
                    valid_end,
                )
                with open(path, "r+b") as f:
                    f.truncate(valid_end)
                    os.fsync(f.fileno())
            views: dict[str, int] = {}
            mv = memoryview(data)
            for s in spans:
                if s.seq <= self.last_seq:
                    raise CorruptionError(
                        f"commit log segment {str(path)!r}: seq {s.seq} does not follow "
                        f"{self.last_seq}; the log is out of order"
                    )
                self.last_seq = s.seq
                views[s.view] = s.seq
                name_len = VIEW_NAME_LEN.unpack_from(mv, s.start + RECORD_HEADER.size)[0]
                ipc_start = s.start + RECORD_HEADER.size + VIEW_NAME_LEN.size + name_len
                yield Record(s.seq, s.view, mv[ipc_start : s.end])
            self._segments[path] = views
            if i == len(paths) - 1:
                self._active_size = valid_end
        self._written_seq = self._synced_seq = self.last_seq
        if paths:
            self._active = paths[-1]
            self._fd = os.open(self._active, os.O_WRONLY | os.O_APPEND)

    def append(self, seq: int, view: str, table: pa.Table) -> None:
        """Write one record (not yet durable: call `sync(seq)`). seq must exceed every earlier."""
        if seq <= self._written_seq:
            raise ValueError(f"commit log seq {seq} does not follow {self._written_seq}")
        pieces = encode_payload(view, table)
        length = sum(len(p) for p in pieces)
        if length > MAX_PAYLOAD:
            raise ValueError(f"batch of view {view!r} is too large for one record ({length} bytes)")
        crc = crc32c.crc32c(SEQ_BYTES.pack(seq))
        for p in pieces:
            crc = crc32c.crc32c(p, crc)
        if self._active is None or self._active_size >= self.segment_bytes:
            self._rotate(seq)
        header = RECORD_HEADER.pack(length, crc, seq)
        total = len(header) + length
        written = os.writev(self._fd, [header, *pieces])
        if written != total:  # os.writev may write short; finish it
            buf = b"".join([header, *(bytes(p) for p in pieces)])
            while written < total:
                written += os.write(self._fd, buf[written:])
        self._active_size += total
        assert self._active is not None
        self._segments[self._active][view] = seq
        self._written_seq = seq
        self.last_seq = seq

    def sync(self, seq: int) -> None:
        """Return once every record up to `seq` is on disk; concurrent callers share a sync."""
        if self._synced_seq >= seq:
            return
        with self._sync_lock:
            if self._synced_seq >= seq:
                return
            target = self._written_seq
            os.fdatasync(self._fd)
            self._synced_seq = target

    def _rotate(self, first_seq: int) -> None:
        with self._sync_lock:
            if self._fd >= 0:
                os.fdatasync(self._fd)
                os.close(self._fd)
                self._synced_seq = self._written_seq
            path = self.dir / f"{first_seq:020d}{SEGMENT_SUFFIX}"
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            fsync_dir(self.dir)
            self._active = path
            self._active_size = 0
            self._segments[path] = {}

    def rotate(self) -> None:
        """Close the active segment (when it holds records) so that `release` may delete it;
        the next append opens a new one. Serialized by the caller as `append`."""
        if self._active is not None and self._active_size > 0:
            self._rotate(self._written_seq + 1)

    def release(self, durable: Callable[[str, int], bool]) -> int:
        """Delete inactive segments all of whose records are durable in both stores.

        durable(view, seq): True when every record of `view` up to `seq` is durable in both
        stores (or the view's records are obsolete). Returns the number of deleted segments.
        """
        deleted = 0
        for path, views in list(self._segments.items()):
            if path == self._active:
                continue
            if all(durable(v, s) for v, s in views.items()):
                path.unlink(missing_ok=True)
                del self._segments[path]
                deleted += 1
        if deleted:
            fsync_dir(self.dir)
            log.info("commit log: deleted %d segment(s) held durably by both stores", deleted)
        return deleted

    def stats(self) -> dict[str, int]:
        paths = list(self._segments)
        size = 0
        for p in paths:
            try:
                size += p.stat().st_size
            except FileNotFoundError:
                pass
        return {
            "segments": len(paths),
            "bytes": size,
            "last_seq": self.last_seq,
            "synced_seq": self._synced_seq,
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._sync_lock:
            if self._fd >= 0:
                os.fdatasync(self._fd)
                os.close(self._fd)
                self._fd = -1
