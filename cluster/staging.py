"""All-or-nothing batches on brokers that deliver aborted records: staging until one commit record.

The router writes each batch's records (a `batch` header, `<router>/<session>/<n>`) in one Kafka
transaction and, after that transaction committed, ONE `commit` record to the one-partition
commits topic (cluster/commits.py) naming, per partition, the batch's last data offset. Some
brokers (e.g. the Tansu test broker) deliver aborted records to read_committed consumers, so the
data records alone prove nothing; the single commit record is the decision, read alike by every
node. A batch without one is dead once the commits topic shows a later batch of its session or a
later session of its router (`Ledger.dead`); a dead batch is dropped.

`Staging` holds one partition's pending records in offset order: staged batches and plain
records (no `batch` header, applied as they arrive unless something staged precedes them).
`next_ready` yields what to apply, in the order of the offset where it ends `L` (a committed
batch: its last record, all read; a plain record: its own offset), at seq `L + 1`, while no
undecided batch has a record below `L`: so every replica applies the same things at the same
seqs, and everything ending below the tablet's position is decided (applied or dead). A batch
ending below the position when it becomes ready was applied before a restart: it is skipped.

Restart: while a batch is staged, the tablet's position may move past its first record (a batch
ending earlier was applied first). `StagedFrom` keeps, durably beside the tablet, the lowest
offset still staged before the position passes it; a restarted node re-reads the partition from
there and the commits topic from its start, and skips what ends below its position.

Not thread-safe: the node's applier thread alone uses `Staging` and `StagedFrom`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from cluster.commits import Ledger
from cluster.record import LogRecord
from store.durable_file import write_text_durably


@dataclass
class StagedBatch:
    first_offset: int
    records: list[LogRecord] = field(default_factory=list)


@dataclass(frozen=True)
class Ready:
    """What to apply at `seq` (its last offset + 1): `view`/`kind` and its records in order."""

    seq: int
    view: str
    kind: str
    records: list[LogRecord]
    batch: str | None = None

    def table(self) -> pa.Table:
        tables = [r.table() for r in self.records]
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


class Staging:
    """The pending records of one partition: {batch id: StagedBatch} and plain records."""

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.batches: dict[str, StagedBatch] = {}
        self.plain: list[LogRecord] = []  # in offset order
        self.read_to = 0  # one past the last offset read

    def first_offset(self) -> int | None:
        firsts = [b.first_offset for b in self.batches.values()]
        firsts += [r.offset for r in self.plain[:1]]
        return min(firsts, default=None)

    def add(self, record: LogRecord, batch: str | None) -> None:
        self.read_to = max(self.read_to, record.offset + 1)
        if batch is None:
            self.plain.append(record)
            return
        staged = self.batches.setdefault(batch, StagedBatch(record.offset))
        staged.records.append(record)

    def drop_dead(self, ledger: Ledger) -> list[str]:
        """Drop the staged batches that can no longer be committed; their ids."""
        dead = [b for b in self.batches if ledger.dead(b, self.partition)]
        for b in dead:
            del self.batches[b]
        return dead

    def next_ready(self, ledger: Ledger) -> Ready | None:
        """The next thing to apply (removed from staging), or None while it must wait."""
        best: tuple[int, str | None] | None = None  # (last offset, batch or None: plain)
        if self.plain:
            best = (self.plain[0].offset, None)
        undecided: list[int] = []
        for b, staged in self.batches.items():
            last = ledger.last_offset(b, self.partition)
            if last is None or last >= self.read_to:  # not committed, or not all read yet
                undecided.append(staged.first_offset)
            elif best is None or last < best[0]:
                best = (last, b)
        if best is None:
            return None
        last, batch = best
        if any(first < last for first in undecided):
            return None
        if batch is None:
            r = self.plain.pop(0)
            return Ready(last + 1, r.view, r.kind, [r])
        records = self.batches.pop(batch).records
        ledger.applied(batch, self.partition)
        return Ready(last + 1, records[0].view, records[0].kind, records, batch)


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
            write_text_durably(self.path, str(offset))
        self.value = offset
