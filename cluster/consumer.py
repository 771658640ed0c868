"""A node's reader: its partitions of the topic, from given offsets, committed records only.

`PartitionConsumer` assigns partitions manually (no consumer-group membership: a node's
partitions come from cluster.yaml, and the durable position lives in the tablet, not in Kafka),
reads with `isolation.level=read_committed` and never commits offsets to Kafka. `poll` returns
records in offset order per partition; `positions` is the next offset to read per partition.
Offsets have gaps (transaction markers take offsets): never assume offset + 1.

Not thread-safe: one thread polls it (librdkafka consumers are single-reader).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from cluster.errors import ConsumeError
from cluster.record import LogRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerOptions:
    max_records: int = 1000  # records per poll: larger amortizes the call, smaller lowers latency
    # Bytes per partition per fetch; must exceed the largest record (ProducerOptions).
    max_partition_fetch_bytes: int = 16 << 20
    read_committed: bool = True  # False only to inspect the raw log (tests, debugging)
    group_id: str = "rickhouse"  # required by librdkafka; never joined, never committed to


class PartitionConsumer:
    """Reads `start`'s partitions of `topic`, each from its given offset."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        start: Mapping[int, int],
        options: ConsumerOptions | None = None,
    ) -> None:
        if not start:
            raise ConsumeError("a consumer needs at least one partition to read")
        self.topic = topic
        self.options = o = options or ConsumerOptions()
        self.positions: dict[int, int] = dict(start)  # next offset to return, per partition
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": o.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed" if o.read_committed else "read_uncommitted",
                "max.partition.fetch.bytes": o.max_partition_fetch_bytes,
                "fetch.max.bytes": max(o.max_partition_fetch_bytes, 64 << 20),
                "enable.partition.eof": False,
                "logger": log,
            }
        )
        self._consumer.assign([TopicPartition(topic, p, off) for p, off in start.items()])
        self._closed = False

    def poll(self, timeout_s: float) -> list[LogRecord]:
        """The next records (at most max_records), waiting up to timeout_s for the first.

        Raises ConsumeError on a fatal consumer error; transient ones are logged and retried
        by librdkafka.
        """
        out: list[LogRecord] = []
        for m in self._consumer.consume(self.options.max_records, timeout_s):
            err = m.error()
            if err is not None:
                if err.fatal() or err.code() == KafkaError.OFFSET_OUT_OF_RANGE:
                    raise ConsumeError(f"partition {m.partition()}: {err.str()}")
                log.warning("consumer: %s", err.str())
                continue
            part, off = m.partition(), m.offset()
            if part is None or off is None:
                raise ConsumeError("librdkafka returned a record without partition or offset")
            out.append(LogRecord(part, off, _headers(m), m.value() or b""))
            self.positions[part] = off + 1
        return out

    def read_until(self, offsets: Mapping[int, int], timeout_s: float) -> list[LogRecord]:
        """Poll until every partition in `offsets` has returned its record at that offset.

        offsets: {partition: offset} as a producer returned them. Raises ConsumeError naming the
        lagging partitions if timeout_s passes first.
        """
        deadline = time.monotonic() + timeout_s
        out: list[LogRecord] = []
        while True:
            behind = {p: o for p, o in offsets.items() if self.positions.get(p, 0) <= o}
            if not behind:
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConsumeError(
                    f"records not readable within {timeout_s} s at {behind} "
                    f"(positions {self.positions})"
                )
            out += self.poll(min(left, 0.5))

    def log_ends(self, timeout_s: float = 2.0) -> dict[int, int]:
        """{partition: the log end offset (high watermark)}, asked of the broker now.

        An upper bound for lag: transaction markers (and, on brokers that deliver them, aborted
        records) take offsets no reader receives. Raises ConsumeError if the broker does not
        answer within timeout_s."""
        out: dict[int, int] = {}
        for p in self.positions:
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=timeout_s, cached=False
                )
            except KafkaException as e:
                raise ConsumeError(f"partition {p}: log end unknown: {e.args[0].str()}") from e
            out[p] = int(high)
        return out

    def fetch_positions(self) -> dict[int, int]:
        """{partition: librdkafka's next fetch offset}: past transaction markers it has read,
        unlike `positions` (past the last record returned). -1001 (invalid) before any fetch."""
        tps = self._consumer.position([TopicPartition(self.topic, p) for p in self.positions])
        return {tp.partition: tp.offset for tp in tps}

    def close(self) -> None:
        """Leave without committing anything; idempotent."""
        if not self._closed:
            self._closed = True
            self._consumer.close()


def _headers(m: Message) -> dict[str, bytes]:
    raw = m.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: v if isinstance(v, bytes) else (v or "").encode() for k, v in pairs}
