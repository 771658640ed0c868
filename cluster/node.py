"""A cluster node: consumes its partitions of the log into its tablets, in offset order.

`Node(config, name)` opens one tablet per partition the node owns (cluster/tablets.py) and, on
`start()`, one applier thread reads those partitions with a read_committed PartitionConsumer
from each tablet's durable position (`last_seq`: the last applied offset + 1) and applies each
record at seq = offset + 1:
- `data`: `FeatureStore.ingest_at(seq, view, table)`;
- `control`: a definitions change (cluster/control.py) by `apply_at(seq, ...)`;
- a record every replica refuses alike (a batch failing validation, an unknown view, a refused
  definitions change, an unreadable record) moves the position by `skip_at` and is counted in
  the partition's `refused` with its reason: the log keeps flowing and replicas stay equal.
Records carrying a `batch` header are staged until the batch's one `commit` record is read from
the commits topic (a second consumer, from its start), then applied together at the seq after
the batch's last record in the partition; a batch that can no longer be committed is dropped
(cluster/staging.py, cluster/commits.py: all-or-nothing batches on brokers that deliver aborted
records). Offsets are never committed to Kafka: the tablet's own durable state is the position,
so a killed node resumes exactly where its tablets end (no record lost, none applied twice).

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

import pyarrow as pa

from cluster.commits import Ledger, commits_topic
from cluster.config import ClusterConfig, NodeConfig
from cluster.consumer import ConsumerOptions, PartitionConsumer
from cluster.control import ControlError, decode_control
from cluster.errors import ClusterError, ConsumeError
from cluster.record import BATCH, COMMIT, CONTROL, DATA, LogRecord
from cluster.staging import Ready, StagedFrom, Staging
from cluster.tablets import TabletOptions, Tablets
from store import DefinitionError, NotFoundError, StoreError, ValidationError

log = logging.getLogger(__name__)

# Refused alike by every replica (deterministic): the position moves past the record.
_REFUSED = (ValidationError, DefinitionError, NotFoundError, ControlError, pa.ArrowInvalid)


@dataclass(frozen=True)
class NodeOptions:
    poll_timeout_s: float = 0.2  # applier wait per poll: latency of stop() and of new records
    log_end_interval_s: float = 1.0  # how often the log end (for lag) is asked of the broker
    retry_s: float = 1.0  # wait before recreating a consumer after a fatal consumer error
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
        self._ledger = Ledger(self.me.partitions)
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
                self._ledger = Ledger(self.me.partitions)
                topic = self.config.kafka.topic
                consumer = PartitionConsumer(
                    self.bootstrap_servers, topic, start, self.options.consumer
                )
                commits = PartitionConsumer(
                    self.bootstrap_servers, commits_topic(topic), {0: 0}, self.options.consumer
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
        next_ends = 0.0
        wait = self.options.poll_timeout_s
        while not self._stop.is_set():
            staged = any(s.batches for s in self._staging.values())
            for record in consumer.poll(0.0 if staged else wait):
                self._stage(record)
            staged = any(s.batches for s in self._staging.values())
            applied = {p: fs.last_seq for p, fs in self.tablets.stores.items()}
            for record in commits.poll(wait if staged else 0.0):
                self._ledger.add(record, applied)
            for p in self._staging:
                self._resolve(p)
            if time.monotonic() >= next_ends:
                next_ends = time.monotonic() + self.options.log_end_interval_s
                self._refresh_lag(consumer)

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
        """Apply, in order, what the partition's staging holds and the commits topic decided."""
        fs = self.tablets.stores[partition]
        state = self._parts.get(partition)
        if state is None or state.failed is not None:
            return
        staging = self._staging[partition]
        for b in staging.drop_dead(self._ledger):
            log.warning("node %s partition %d: dropped aborted batch %s",
                        self.me.name, partition, b)  # fmt: skip
        while (ready := staging.next_ready(self._ledger)) is not None:
            if ready.seq <= fs.last_seq:
                continue  # applied before a restart
            self._staged_from[partition].set(staging.first_offset())
            self._apply_ready(partition, fs, ready)
            if self._parts[partition].failed is not None:
                return

    def _apply_ready(self, partition: int, fs: Any, ready: Ready) -> None:
        seq = ready.seq
        refusal: str | None = None
        try:
            if any(x.view != ready.view or x.kind != ready.kind for x in ready.records):
                raise ControlError("a batch mixes views or kinds in one partition")
            if ready.kind == DATA:
                fs.ingest_at(seq, ready.view, ready.table())
            elif ready.kind == CONTROL and len(ready.records) == 1:
                change = decode_control(ready.records[0].value)
                fs.apply_at(seq, change.definitions, change.force)
            elif ready.kind == COMMIT:
                fs.skip_at(seq, "commit record of an empty batch")
            else:
                raise ControlError(f"record of unknown kind {ready.kind!r}")
        except _REFUSED as e:
            refusal = f"offset {seq - 1}: {type(e).__name__}: {e}"
            log.error("node %s partition %d: refused %s", self.me.name, partition, refusal)
            try:
                fs.skip_at(seq, refusal[:1000])
            except StoreError as e2:
                self._fail(partition, e2)
                return
        except StoreError as e:
            self._fail(partition, e)
            return
        self._advance(partition, refusal)

    def _advance(self, partition: int, refusal: str | None) -> None:
        applied = self.tablets.stores[partition].last_seq - 1
        with self._lock:
            s = self._parts[partition]
            lag = None if s.log_end is None else max(0, s.log_end - applied - 1)
            self._parts[partition] = replace(
                s,
                applied_offset=applied,
                lag=lag,
                applied_records=s.applied_records + (refusal is None),
                refused=s.refused + (refusal is not None),
                last_refusal=refusal or s.last_refusal,
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
