"""The commits topic: one atomic record decides that a batch is applied, everywhere.

`<topic>-commits` (one partition, created with the data topic by `ensure_topic`) holds, in one
total order every node reads alike:
- `session` records: a router (one transactional.id) started a new session; every batch of its
  earlier sessions without a commit record is dead;
- `commit` records: batch `<router>/<session>/<n>` is committed; its value says, per partition,
  the offset of the batch's last data record there (JSON `{"offsets": {"<p>": offset}}`).

A router writes a session's batches one at a time (`n` counts up): the data in one transaction,
then, after that transaction committed, the commit record (cluster/writer.py). So a batch
without a commit record is dead once the commits topic shows a later batch of its session or a
later session of its router: `Ledger.dead`. A single record is never half-visible, even on a
broker that delivers aborted records, so every node takes the same decision.

`Ledger` is the node's view of that topic. `LedgerFile` keeps it durably beside the tablets,
with the commits-topic offset it reflects, so a restarted node reads that topic from there, not
from its start. The node saves it only when every batch the ledger has forgotten (`applied`) is
durable in its tablet: the saved state then holds the commit of every batch a restarted node
can re-read and not yet find applied, and the session facts that make the others dead.

Not thread-safe: the node's applier thread alone uses them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.errors import ClusterError
from cluster.record import KIND, LogRecord
from store.durable_file import write_text_durably

SESSION = "session"  # `kind` of a session record (commit records use record.COMMIT)


def commits_topic(topic: str) -> str:
    """The name of the commits topic of the data topic `topic`."""
    return f"{topic}-commits"


def encode_offsets(offsets: Mapping[int, int]) -> bytes:
    return json.dumps({"offsets": {str(p): o for p, o in sorted(offsets.items())}}).encode()


@dataclass(frozen=True)
class BatchId:
    router: str
    session: str
    n: int

    @staticmethod
    def parse(text: str) -> BatchId | None:
        """`<router>/<session>/<n>`, or None for another form (never dead, never committed)."""
        head, _, n = text.rpartition("/")
        router, _, session = head.rpartition("/")
        if not router or not n.isdigit():
            return None
        return BatchId(router, session, int(n))

    def __str__(self) -> str:
        return f"{self.router}/{self.session}/{self.n}"


class Ledger:
    """What the commits topic said so far, restricted to the partitions of one node."""

    def __init__(self, partitions: Iterable[int]) -> None:
        self.partitions = frozenset(partitions)
        self.committed: dict[str, dict[int, int]] = {}  # batch: {partition: last offset}
        self._last_n: dict[tuple[str, str], int] = {}  # (router, session): last committed n
        self._session: dict[str, str] = {}  # router: its latest session
        self._ended: set[tuple[str, str]] = set()

    def add(self, record: LogRecord, applied: Mapping[int, int]) -> None:
        """Read one record of the commits topic. applied: {partition: the tablet's next seq};
        commits of batches applied there already (before a restart) are not kept."""
        kind = record.headers.get(KIND, b"").decode()
        text = record.headers.get("batch", b"").decode()
        if kind == SESSION:
            router, _, session = text.rpartition("/")
            self._start(router, session)
            return
        bid = BatchId.parse(text)
        if bid is None:
            return
        self._start(bid.router, bid.session)
        key = (bid.router, bid.session)
        self._last_n[key] = max(self._last_n.get(key, -1), bid.n)
        try:
            raw = json.loads(record.value)["offsets"]
            offsets = {int(p): int(o) for p, o in raw.items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # unreadable: the batch stays uncommitted, dead like an aborted one
        mine = {
            p: o for p, o in offsets.items() if p in self.partitions and o + 1 > applied.get(p, 0)
        }
        if mine:
            self.committed[text] = mine

    def _start(self, router: str, session: str) -> None:
        current = self._session.get(router)
        if current != session:
            if current is not None:
                self._ended.add((router, current))
            self._session[router] = session

    def last_offset(self, batch: str, partition: int) -> int | None:
        """The offset of the committed batch's last record in `partition`; None: not committed."""
        return self.committed.get(batch, {}).get(partition)

    def applied(self, batch: str, partition: int) -> None:
        """The batch was applied (or found applied) in `partition`: forget it there."""
        parts = self.committed.get(batch)
        if parts is not None:
            parts.pop(partition, None)
            if not parts:
                del self.committed[batch]

    def dead(self, batch: str, partition: int) -> bool:
        """True if `batch` can no longer be applied in `partition`: never committed (module
        docstring), or committed but already applied there (before a restart)."""
        if self.last_offset(batch, partition) is not None:
            return False
        bid = BatchId.parse(batch)
        if bid is None:
            return False
        key = (bid.router, bid.session)
        return key in self._ended or self._last_n.get(key, -1) >= bid.n

    def state(self) -> dict[str, Any]:
        """The ledger as JSON-ready data (`restore` reads it back). Sessions that ended keep
        only that fact: every batch of theirs without a commit is dead whatever its number."""
        return {
            "committed": {
                b: {str(p): o for p, o in parts.items()} for b, parts in self.committed.items()
            },
            "last_n": [
                [r, s, n] for (r, s), n in self._last_n.items() if (r, s) not in self._ended
            ],
            "sessions": dict(self._session),
            "ended": sorted([r, s] for r, s in self._ended),
        }

    def restore(self, state: Mapping[str, Any], applied: Mapping[int, int]) -> None:
        """Take `state` (from `state()`); commits of batches applied already (applied:
        {partition: the tablet's next seq}) are not kept, as in `add`."""
        for batch, parts in state.get("committed", {}).items():
            mine = {
                int(p): int(o)
                for p, o in parts.items()
                if int(p) in self.partitions and int(o) + 1 > applied.get(int(p), 0)
            }
            if mine:
                self.committed[batch] = mine
        self._last_n = {(r, s): int(n) for r, s, n in state.get("last_n", [])}
        self._session = {str(r): str(s) for r, s in state.get("sessions", {}).items()}
        self._ended = {(r, s) for r, s in state.get("ended", [])}


class LedgerFile:
    """A node's durable Ledger and the commits-topic offset it reflects (a JSON file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved_offset = 0  # the offset of the last save (or load): nothing newer is durable

    def load(self, partitions: Iterable[int], applied: Mapping[int, int]) -> tuple[Ledger, int]:
        """(the ledger as saved, the commits-topic offset to read from); a new ledger and 0
        when nothing was saved. A file this node cannot read is an error naming it."""
        ledger = Ledger(partitions)
        if not self.path.exists():
            self.saved_offset = 0
            return ledger, 0
        try:
            saved = json.loads(self.path.read_text())
            offset = int(saved["offset"])
            ledger.restore(saved["ledger"], applied)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ClusterError(
                f"{self.path}: unreadable commits-topic position ({e}); delete it to read the "
                "commits topic from its start"
            ) from e
        self.saved_offset = offset
        return ledger, offset

    def save(self, ledger: Ledger, offset: int) -> None:
        """Make (ledger, offset) durable: written whole, fsynced, renamed into place."""
        write_text_durably(self.path, json.dumps({"offset": offset, "ledger": ledger.state()}))
        self.saved_offset = offset
