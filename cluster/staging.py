"""All-or-nothing batches on brokers that deliver aborted records: commit markers and staging.

The router writes each batch as records carrying a `batch` header (`<writer>/<id>`), then, in
the same Kafka transaction and after every data record, one `commit` record per partition the
batch touches. A node stages a batch's records per partition and applies them only when that
partition's `commit` record arrives, at the commit record's seq (one apply per batch and
partition: the batch's chunks are concatenated). A batch that never gets its commit record (an
aborted transaction, which some brokers, e.g. the Tansu test broker, deliver to read_committed
consumers) is dropped when the next batch of the same writer reaches the partition: a writer
(one transactional.id) runs one transaction at a time, so its earlier open batch is over.

Restart: while a batch is staged, the tablet's position may move past its first record (another
writer's batch committed in between). `StagedFrom` keeps, durably beside the tablet, the lowest
offset still staged before the position passes it; a restarted node re-reads from there and
drops the batches whose commit record lies below its position (already applied).

Not thread-safe: the node's applier thread alone uses `Staging` and `StagedFrom`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from cluster.record import LogRecord


@dataclass
class StagedBatch:
    first_offset: int
    records: list[LogRecord] = field(default_factory=list)


@dataclass(frozen=True)
class Ready:
    """A batch to apply at `seq` (commit offset + 1): `view`/`kind` and its records in order."""

    seq: int
    view: str
    kind: str
    records: list[LogRecord]

    def table(self) -> pa.Table:
        tables = [r.table() for r in self.records]
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def writer_of(batch: str) -> str:
    return batch.rpartition("/")[0]


class Staging:
    """The staged batches of one partition, {batch id: StagedBatch}, in arrival order."""

    def __init__(self) -> None:
        self.batches: dict[str, StagedBatch] = {}

    def first_offset(self) -> int | None:
        return min((b.first_offset for b in self.batches.values()), default=None)

    def stage(self, record: LogRecord, batch: str) -> list[str]:
        """Stage a data/control record; returns the batch ids dropped as aborted."""
        dropped = []
        if batch not in self.batches:
            writer = writer_of(batch)
            dropped = [b for b in self.batches if writer_of(b) == writer]
            for b in dropped:
                del self.batches[b]
            self.batches[batch] = StagedBatch(record.offset)
        self.batches[batch].records.append(record)
        return dropped

    def commit(self, record: LogRecord, batch: str, position: int) -> Ready | None:
        """The batch a commit record completes, or None if there is nothing to apply (its
        records are all below `position`, the tablet's next seq: applied before a restart)."""
        staged = self.batches.pop(batch, None)
        if staged is None or record.offset + 1 <= position:
            return None
        first = staged.records[0]
        return Ready(record.offset + 1, first.view, first.kind, staged.records)


class StagedFrom:
    """The durable lowest staged offset of one partition (a file beside the tablet)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.value: int | None = None
        if path.exists():
            text = path.read_text().strip()
            self.value = int(text) if text else None

    def set(self, offset: int | None) -> None:
        """Make `offset` (None: nothing staged) durable before the position passes it."""
        if offset == self.value:
            return
        if offset is None:
            self.path.unlink(missing_ok=True)
        else:
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w") as f:
                f.write(str(offset))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        self.value = offset
