"""A cluster node: consumes its partitions of the log into its tablets, in offset order.

`Node(config, name)` opens one tablet per partition the node owns (cluster/tablets.py) and, on
`start()`, one applier thread reads those partitions with a read_committed PartitionConsumer
from each tablet's durable position (`last_seq`: the last applied offset + 1) and applies each
record at seq = offset + 1:
- `data`: a batch, by `ingest_group_at` (store/external.py: `ingest_at` for several records);
- `control`: a definitions change (cluster/control.py) by `apply_at(seq, ...)`;
- `delete`: entities to delete (cluster/deletes.py) by `delete_at(seq, ...)`;
- a record every replica refuses alike (a batch failing validation, an unknown view, a refused
  definitions change, an unreadable record) moves the position by `skip_at` and is counted in
  the partition's `refused` with its reason: the log keeps flowing and replicas stay equal.
Records carrying a `batch` header are staged until the batch's one `commit` record is read from
the commits topic (a second consumer), then applied together at the seq after the batch's last
record in the partition; a batch that can no longer be committed is dropped (cluster/staging.py,
cluster/commits.py: all-or-nothing batches on brokers that deliver aborted records). Offsets are
never committed to Kafka: the tablet's own durable state is the position, so a killed node
resumes exactly where its tablets end (no record lost, none applied twice).

Group commit: what one poll made ready for a tablet (at most `group_records` items) is applied
by cluster/applier.py with one fsync per run of data records, not one per record.

Restart: the commits topic is read from the offset saved with the node's ledger
(`commits-position.json` in the node's root, cluster/commits.py LedgerFile), saved at most every
`ledger_save_s` once every batch popped from staging is durable in its tablet (never while a
tablet is failed); the data partitions from each tablet's position or its lowest staged offset.

A tablet that fails otherwise (an I/O error, a damaged file) stops applying: its partition is
marked failed, serving what it holds, until the node restarts. When the broker cannot be
reached the node keeps serving and `state()` says so (`broker.connected` False with the error).

Threading: the applier thread alone consumes and applies. `state()`, `wait_positions()` and the
tablets' reads may be called from any thread; `_parts` entries are replaced whole under `_lock`,
and `_advanced` (a condition on `_lock`) is notified whenever a position moves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cluster.applier import apply_ready
from cluster.commits import LedgerFile, commits_topic
from cluster.config import ClusterConfig, NodeConfig
from cluster.consumer import ConsumerOptions, PartitionConsumer
from cluster.deletes import DELETE, DeleteResults
from cluster.errors import ClusterError, ConsumeError
from cluster.record import BATCH, COMMIT, LogRecord
from cluster.staging import Ready, StagedFrom, Staging
from cluster.tablets import TabletOptions, Tablets
from store import StoreError

log = logging.getLogger(__name__)

LEDGER_FILE = "commits-position.json"  # in the node's root: on-disk layout, do not change


@dataclass(frozen=True)
class NodeOptions:
    poll_timeout_s: float = 0.2  # applier wait per poll: latency of stop() and of new records
    log_end_interval_s: float = 1.0  # how often the log end (for lag) is asked of the broker
    retry_s: float = 1.0  # wait before recreating a consumer after a fatal consumer error
    group_records: int = 1000  # ready items applied per tablet with one fsync, at most
    ledger_save_s: float = 1.0  # how often the commits-topic position is saved, at most
    tablets: TabletOptions = field(default_factory=TabletOptions)
    consumer: ConsumerOptions = field(default_factory=ConsumerOptions)


@dataclass(frozen=True)
class PartitionState:
    """What a node says of one partition. Offsets are Kafka offsets (-1: none yet)."""

    applied_offset: int  # the last record applied (or skipped) by the tablet
    log_end: int | None = None  # high watermark when last asked; None if never known
    lag: int | None = None  # records between the applied offset and the log end; None unknown
    applied_records: int = 0  # since this process started
    refused: int = 0  # records skipped because every replica refuses them
    last_refusal: str | None = None
    last_applied_at: float | None = None  # unix time of the last applied record
    failed: str | None = None  # the error that stopped this tablet, if any


class Node:
    """One node of a cluster: its tablets and the applier feeding them (module docstring)."""

    def __init__(
        self,
        config: ClusterConfig,
        name: str,
        bootstrap_servers: str | None = None,
        options: NodeOptions | None = None,
    ) -> None:
        self.config = config
        self.me: NodeConfig = config.node(name)
        self.options = options or NodeOptions()
        self.bootstrap_servers = bootstrap_servers or config.kafka.bootstrap_servers
        if config.kafka.embedded and bootstrap_servers is None:
            raise ClusterError("kafka.bootstrap_servers is 'embedded': pass the broker's address")
        self.tablets = Tablets(
            self.me.root, self.me.partitions, config.partitions, self.options.tablets
        )
        # applier thread only: batches waiting for their commit record (cluster/staging.py)
        self._staging = {p: Staging(p) for p in self.me.partitions}
        self._ledger_file = LedgerFile(self.me.root / LEDGER_FILE)
        self._ledger, _ = self._ledger_file.load(self.me.partitions, self._applied())
        self._staged_from = {
            p: StagedFrom(self.me.root / f"staged-from-p{p:04d}") for p in self.me.partitions
        }
        self._lock = threading.Lock()
        self._advanced = threading.Condition(self._lock)  # notified when a position moves
        self._parts: dict[int, PartitionState] = {  # GUARDED_BY(_lock)
            p: PartitionState(applied_offset=off) for p, off in self.tablets.positions().items()
        }
        self._broker: dict[str, Any] = {"connected": None, "error": None, "last_contact": None}
        self._started_at = time.time()
        self.delete_results = DeleteResults()  # what applied deletes deleted, for the router
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Node:
        """Start the applier thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="node-applier", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop applying and close the tablets (they flush). Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.tablets.close()

    # ------------------------------------------------------------------ state

    def positions(self) -> dict[int, int]:
        """{partition: applied offset} (-1 before the first record)."""
        with self._lock:
            return {p: s.applied_offset for p, s in self._parts.items()}

    def wait_positions(self, required: Mapping[int, int], timeout_s: float) -> dict[int, int]:
        """Wait until each partition in `required` has applied at least that offset, at most
        timeout_s; returns {partition: applied offset} of those still behind (empty: caught up).
        Partitions this node does not serve are ignored (the caller routed them elsewhere)."""
        deadline = time.monotonic() + timeout_s
        with self._advanced:
            while True:
                behind = {
                    p: self._parts[p].applied_offset
                    for p, off in required.items()
                    if p in self._parts and self._parts[p].applied_offset < off
                }
                left = deadline - time.monotonic()
                if not behind or left <= 0:
                    return behind
                self._advanced.wait(left)

    def state(self) -> dict[str, Any]:
        """The node's state as JSON-ready data (what /v1/positions and `cluster status` show)."""
        with self._lock:
            parts = {str(p): asdict(s) for p, s in sorted(self._parts.items())}
            broker = dict(self._broker)
        return {
            "node": self.me.name,
            "partitions": parts,
            "broker": broker,
            "started_at": self._started_at,
            "now": time.time(),
            "applying": self._thread is not None and self._thread.is_alive(),
        }

    # ------------------------------------------------------------------ the applier

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer = commits = None
            try:
                start = {p: self._start(p) for p in self.tablets.stores}
                self._staging = {p: Staging(p) for p in self.me.partitions}
                self._ledger, commits_from = self._ledger_file.load(
                    self.me.partitions, self._applied()
                )
                topic = self.config.kafka.topic
                consumer = PartitionConsumer(
                    self.bootstrap_servers, topic, start, self.options.consumer
                )
                commits = PartitionConsumer(
                    self.bootstrap_servers,
                    commits_topic(topic),
                    {0: commits_from},
                    self.options.consumer,
                )
                self._consume(consumer, commits)
            except ConsumeError as e:
                log.error("node %s: consumer failed, recreating it: %s", self.me.name, e)
                self._set_broker(False, str(e))
                self._stop.wait(self.options.retry_s)
            finally:
                for c in (consumer, commits):
                    if c is not None:
                        c.close()

    def _consume(self, consumer: PartitionConsumer, commits: PartitionConsumer) -> None:
        next_ends = next_save = 0.0
        wait = self.options.poll_timeout_s
        while not self._stop.is_set():
            staged = any(s.batches for s in self._staging.values())
            for record in consumer.poll(0.0 if staged else wait):
                self._stage(record)
            staged = any(s.batches for s in self._staging.values())
            applied = self._applied()
            for record in commits.poll(wait if staged else 0.0):
                self._ledger.add(record, applied)
            for p in self._staging:
                self._resolve(p)
            if time.monotonic() >= next_save:
                next_save = time.monotonic() + self.options.ledger_save_s
                self._save_ledger(commits)
            if time.monotonic() >= next_ends:
                next_ends = time.monotonic() + self.options.log_end_interval_s
                self._refresh_lag(consumer)

        self._save_ledger(commits)

    def _applied(self) -> dict[int, int]:
        """{partition: its tablet's next seq}: what is durably applied."""
        return {p: fs.last_seq for p, fs in self.tablets.stores.items()}

    def _save_ledger(self, commits: PartitionConsumer) -> None:
        """Save the ledger with the commits-topic offset it reflects. Called between polls,
        when every batch popped from staging is durable in its tablet; never once a tablet
        failed (the batches it popped are not applied: a restart must find their commits)."""
        with self._lock:
            failed = {p for p, s in self._parts.items() if s.failed is not None}
        for p, staging in self._staging.items():
            first, kept = staging.first_offset(), self._staged_from[p].value
            if p in failed or kept is None or (first is not None and first <= kept):
                continue
            if staging.read_to >= self.tablets.stores[p].last_seq:  # all below it read again
                self._staged_from[p].set(first)  # nothing below `first` is left to apply
        offset = commits.positions[0]
        if not failed and offset != self._ledger_file.saved_offset:
            self._ledger_file.save(self._ledger, offset)

    def _start(self, p: int) -> int:
        """Where to read partition p from: the tablet's position, or its first staged record."""
        starts = [self.tablets.stores[p].last_seq, self._staged_from[p].value]
        starts.append(self._staging[p].first_offset())
        return min(s for s in starts if s is not None)

    def _stage(self, r: LogRecord) -> None:
        fs = self.tablets.stores.get(r.partition)
        if fs is None:
            return
        staging = self._staging[r.partition]
        batch = r.headers.get(BATCH)
        if batch is None or r.kind == COMMIT:  # a commit record here: an older router's form
            staging.read_to = max(staging.read_to, r.offset + 1)
            if r.kind != COMMIT and r.offset + 1 > fs.last_seq:
                staging.add(r, None)
            return
        staging.add(r, batch.decode())

    def _resolve(self, partition: int) -> None:
        """Apply, in order, what the partition's staging holds and the commits topic decided:
        groups of at most `group_records` items, each durable with one fsync."""
        fs = self.tablets.stores[partition]
        state = self._parts.get(partition)
        if state is None or state.failed is not None:
            return
        staging = self._staging[partition]
        staged_from = self._staged_from[partition]
        for b in staging.drop_dead(self._ledger):
            log.warning("node %s partition %d: dropped aborted batch %s",
                        self.me.name, partition, b)  # fmt: skip
        while True:
            readies: list[Ready] = []
            while len(readies) < self.options.group_records:
                ready = staging.next_ready(self._ledger)
                if ready is None:
                    break
                if ready.seq > fs.last_seq:  # else applied before a restart
                    readies.append(ready)
            if not readies:
                if staging.first_offset() is None and staging.read_to >= fs.last_seq:
                    staged_from.set(None)  # else raised by _save_ledger, at its pace
                return
            # durable before the position passes a record of the group or still staged
            firsts = [r.records[0].offset for r in readies]
            still = staging.first_offset()
            need = min(firsts if still is None else [*firsts, still])
            if staged_from.value is None or staged_from.value > need:
                staged_from.set(need)
            try:
                refusals = apply_ready(fs, readies, self._on_result)
            except StoreError as e:
                self._fail(partition, e)
                return
            for why in refusals:
                if why is not None:
                    log.error("node %s partition %d: refused %s", self.me.name, partition, why)
            self._advance(partition, refusals)

    def _on_result(self, ready: Ready, result: object) -> None:
        """What a kind applied alone returned (cluster/applier.py): a delete's counts."""
        if ready.kind == DELETE and isinstance(result, dict):
            self.delete_results.put(ready.records[0].partition, ready.seq - 1, result)

    def _advance(self, partition: int, refusals: list[str | None]) -> None:
        applied = self.tablets.stores[partition].last_seq - 1
        refused = [r for r in refusals if r is not None]
        with self._lock:
            s = self._parts[partition]
            lag = None if s.log_end is None else max(0, s.log_end - applied - 1)
            self._parts[partition] = replace(
                s,
                applied_offset=applied,
                lag=lag,
                applied_records=s.applied_records + len(refusals) - len(refused),
                refused=s.refused + len(refused),
                last_refusal=refused[-1] if refused else s.last_refusal,
                last_applied_at=time.time(),
            )
            self._advanced.notify_all()

    def _fail(self, partition: int, e: BaseException) -> None:
        log.error(
            "node %s: tablet of partition %d failed, not applying: %s", self.me.name, partition, e
        )
        with self._lock:
            self._parts[partition] = replace(self._parts[partition], failed=str(e))

    def _refresh_lag(self, consumer: PartitionConsumer) -> None:
        try:
            ends = consumer.log_ends(timeout_s=min(2.0, self.options.log_end_interval_s * 2))
            fetched = consumer.fetch_positions()
        except ConsumeError as e:
            self._set_broker(False, str(e))
            return
        self._set_broker(True, None)
        with self._lock:
            for p, end in ends.items():
                s = self._parts[p]
                # librdkafka's fetch position is past the transaction markers it has read
                done = max(s.applied_offset + 1, fetched.get(p, -1))
                self._parts[p] = replace(s, log_end=end, lag=max(0, end - done))

    def _set_broker(self, connected: bool, error: str | None) -> None:
        with self._lock:
            self._broker["connected"] = connected
            self._broker["error"] = error
            if connected:
                self._broker["last_contact"] = time.time()
