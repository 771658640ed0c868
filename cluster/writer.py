"""The router's batch writer: each batch's data in one transaction, then its one commit
record, and the acknowledged positions that read-your-writes waits for.

`BatchWriter.produce(slices)` writes one batch at a time: it names the batch
`<transactional id>/<session>/<n>` (n counts up within this writer's session), produces the
slices in one Kafka transaction and, once it committed, one `commit` record to the commits topic
(its own transaction, acks=all) saying where the batch ends in each partition (cluster/commits.py
says why); only then does it remember per partition the highest offset it acknowledged (`acked`:
what read-your-writes waits for). The TransactionalProducer is created on first use (or by
`warm`) under `transactional_id`, which fences an earlier producer with that id and aborts its
open transaction, and then writes the `session` record that ends the earlier sessions. `stamp_created` stamps the ingest time where a row gives no created_timestamp,
never below an earlier stamp.

Thread-safety: all methods may be called from any thread; `_lock` guards the acknowledged
positions and the last stamp, `_producer_lock` the producer's creation.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import replace

import numpy as np
import pyarrow as pa

from cluster.commits import commits_topic, encode_offsets
from cluster.errors import ClusterError
from cluster.producer import ProducerOptions, TransactionalProducer
from cluster.record import Slice
from store.batch import CREATED_TS
from store.dtypes import TIMESTAMP

log = logging.getLogger(__name__)


class BatchWriter:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        transactional_id: str,
        options: ProducerOptions | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.transactional_id = transactional_id
        self.options = options or ProducerOptions()
        self._lock = threading.Lock()
        self._acked: dict[int, int] = {}  # GUARDED_BY(_lock)
        self._last_created = 0  # GUARDED_BY(_lock)
        self._producer_lock = threading.Lock()
        self._producer: TransactionalProducer | None = None  # GUARDED_BY(_producer_lock)
        self.session = uuid.uuid4().hex
        self._n = 0  # GUARDED_BY(_producer_lock): the next batch number of this session

    def batch_id(self) -> str:
        """A provisional batch id; `produce` renames the batch when its turn comes."""
        return f"{self.transactional_id}/{self.session}/pending"

    def produce(self, slices: list[Slice]) -> dict[int, int]:
        """The slices (one batch) in one transaction, then its commit record; {partition: last
        offset written} once the commit record is durable."""
        if not slices:
            return {}
        with self._producer_lock:
            producer = self._writer_locked()
            batch = f"{self.transactional_id}/{self.session}/{self._n}"
            self._n += 1
            positions = producer.produce([replace(s, batch=batch) for s in slices])
            commit = Slice(
                0, slices[0].view, "commit", encode_offsets(positions), batch,
                commits_topic(self.topic),
            )  # fmt: skip
            producer.produce([commit])
        with self._lock:
            for p, off in positions.items():
                self._acked[p] = max(self._acked.get(p, -1), off)
        return positions

    def acked(self) -> dict[int, int]:
        """{partition: the highest offset this writer acknowledged}."""
        with self._lock:
            return dict(self._acked)

    def stamp_created(self, table: pa.Table, missing: np.ndarray) -> pa.Table:
        """`table` with the ingest time where `missing` (never below a past stamp)."""
        with self._lock:
            now = max(time.time_ns(), self._last_created)
            self._last_created = now
        given = table.column(CREATED_TS).cast(pa.int64()).to_numpy(zero_copy_only=False)
        created = pa.array(np.where(missing, now, given)).cast(TIMESTAMP)
        return table.set_column(table.schema.get_field_index(CREATED_TS), CREATED_TS, created)

    def warm(self) -> None:
        """Create the producer now (a restarted router aborts its zombie's transaction)."""
        try:
            self._writer()
        except ClusterError as e:
            log.error("router: cannot start the producer yet (retried on the first write): %s", e)

    def close(self) -> None:
        with self._producer_lock:
            if self._producer is not None:
                self._producer.close()

    def _writer(self) -> TransactionalProducer:
        with self._producer_lock:
            return self._writer_locked()

    def _writer_locked(self) -> TransactionalProducer:
        if self._producer is None:
            producer = TransactionalProducer(
                self.bootstrap_servers, self.topic, self.transactional_id, self.options
            )
            session = f"{self.transactional_id}/{self.session}"
            try:
                producer.produce([Slice(0, "", "session", b"", session, commits_topic(self.topic))])
            except ClusterError:
                producer.close()
                raise
            self._producer = producer
        return self._producer
