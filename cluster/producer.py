"""The transactional Kafka producer: a batch's per-partition slices in one Kafka transaction.

`TransactionalProducer.produce(slices)` encodes every slice (Arrow IPC, chunked under the record
limit) before the transaction begins, so a refused batch writes nothing; then produces every
record in one transaction (idempotent producer, acks=all) and returns `{partition: offset}` of
the last record it wrote to each partition, only after the commit succeeded. On any error the
transaction is aborted and ProduceError raised: the batch may be retried. A newer producer with
the same `transactional.id` (a restarted router) fences this one: FencedError, and this object
is dead.

Thread-safety: one transaction at a time; `produce` and `close` take `_lock`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from cluster.errors import FencedError, ProduceError
from cluster.record import Slice, chunked, headers_of

log = logging.getLogger(__name__)

# Room for a record's headers and batch framing above its value, under Kafka's default broker
# limit (message.max.bytes = 1048588) when max_record_bytes keeps its default.
_FRAME_BYTES = 48_000
_DeliveryCallback = Callable[[KafkaError | None, Message], None]
_FENCED_CODES = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


@dataclass(frozen=True)
class ProducerOptions:
    # Largest record value; bigger slices are cut into chunks. Above ~1 MB a real Kafka broker
    # needs message.max.bytes raised; bigger records mean fewer records but more memory per fetch.
    max_record_bytes: int = 1_000_000
    # A real broker aborts a transaction left open this long (a dead router); it also bounds
    # how long read_committed consumers can be held back by it.
    transaction_timeout_s: float = 60.0
    timeout_s: float = 30.0  # bound on init, flush, commit and abort
    linger_ms: int = 5  # batching delay inside librdkafka: throughput vs per-batch latency
    compression: str = "none"  # lz4/zstd trade router CPU for network and broker bytes


class TransactionalProducer:
    """Produces slices to `topic` in transactions under `transactional_id`."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        transactional_id: str,
        options: ProducerOptions | None = None,
    ) -> None:
        self.topic = topic
        self.transactional_id = transactional_id
        self.options = options or ProducerOptions()
        o = self.options
        self._lock = threading.Lock()
        self._producer = Producer(  # GUARDED_BY(_lock) for transactions
            {
                "bootstrap.servers": bootstrap_servers,
                "transactional.id": transactional_id,
                "enable.idempotence": True,
                "acks": "all",
                "transaction.timeout.ms": int(o.transaction_timeout_s * 1000),
                "message.max.bytes": o.max_record_bytes + _FRAME_BYTES,
                "linger.ms": o.linger_ms,
                "compression.type": o.compression,
                "logger": log,
                # errors reach _on_error instead of being raised from inside flush(), where a
                # pending exception breaks the delivery callbacks that follow it
                "error_cb": self._on_error,
            }
        )
        self._fatal: KafkaError | None = None  # GUARDED_BY(_lock) except in librdkafka callbacks
        self._dead = False  # GUARDED_BY(_lock): fenced or fatal; every call raises
        try:
            self._producer.init_transactions(o.timeout_s)
        except KafkaException as e:
            raise self._error(e.args[0], "init_transactions") from e

    def produce(self, slices: Sequence[Slice]) -> dict[int, int]:
        """Produce every slice in one transaction; {partition: last offset written} on commit.

        Raises ProduceError (nothing committed; retry is safe) or FencedError (this producer is
        dead). Slices of several views and partitions may be mixed; records keep slice order.
        """
        records = chunked(slices, self.options.max_record_bytes)
        with self._lock:
            if self._dead:
                raise FencedError(f"producer {self.transactional_id!r} was fenced or failed")
            p = self._producer
            offsets: dict[int, int] = {}
            failures: list[str] = []

            def on_delivery(err: KafkaError | None, msg: Message) -> None:
                part, off = msg.partition(), msg.offset()
                if err is not None or part is None or off is None:
                    failures.append(f"partition {part}: {err.str() if err else 'no offset'}")
                else:
                    offsets[part] = max(offsets.get(part, -1), off)

            try:
                p.begin_transaction()
                for s, value, i, n in records:
                    self._produce_one(s, value, i, n, on_delivery)
                left = p.flush(self.options.timeout_s)
                if self._fatal is not None:
                    raise KafkaException(self._fatal)
                if left or failures:
                    why = failures[0] if failures else f"{left} records undelivered in time"
                    self._abort()
                    raise ProduceError(f"transaction aborted: {why}")
                self._commit()
            except KafkaException as e:
                err = e.args[0]
                if not err.fatal() and err.txn_requires_abort():
                    self._abort()
                raise self._error(err, "transaction") from e
            return offsets

    def close(self) -> None:
        """Flush and drop the producer; an open transaction (none outside produce) is aborted."""
        with self._lock:
            self._dead = True
            self._producer.flush(self.options.timeout_s)

    def _produce_one(self, s: Slice, value: bytes, i: int, n: int, cb: _DeliveryCallback) -> None:
        headers = headers_of(s.view, s.kind, i, n, s.batch)
        while True:
            try:
                self._producer.produce(
                    s.topic or self.topic,
                    value=value,
                    partition=s.partition,
                    headers=headers,
                    on_delivery=cb,
                )
                return
            except BufferError:  # local queue full: let deliveries drain it
                self._producer.poll(0.05)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
        else:
            log.warning("producer %s: %s", self.transactional_id, err.str())

    def _commit(self) -> None:
        while True:
            try:
                self._producer.commit_transaction(self.options.timeout_s)
                return
            except KafkaException as e:
                if not e.args[0].retriable():
                    raise
                log.warning("retrying commit_transaction: %s", e.args[0].str())

    def _abort(self) -> None:
        try:
            self._producer.abort_transaction(self.options.timeout_s)
        except KafkaException as e:
            self._dead = True
            log.error("abort_transaction failed, producer unusable: %s", e.args[0].str())

    def _error(self, err: KafkaError, during: str) -> ProduceError:
        if err.code() in _FENCED_CODES:
            self._dead = True
            return FencedError(
                f"producer {self.transactional_id!r} was fenced by a newer producer with the "
                f"same transactional.id during {during}; nothing of its open transaction commits"
            )
        if err.fatal():
            self._dead = True
        return ProduceError(f"{during} failed, nothing committed: {err.str()}")
