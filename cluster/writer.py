"""The router's batch writer: batches in one transaction each, closed by commit records, and the
acknowledged positions that read-your-writes waits for.

`BatchWriter.produce(slices)` adds, after the slices (which carry one batch id), a `commit`
record to every partition they touch, in the same Kafka transaction (cluster/staging.py says
why), and remembers per partition the highest offset it acknowledged (`acked`: what
read-your-writes waits for). The TransactionalProducer is created on first use (or by `warm`)
under `transactional_id`, which fences an earlier producer with that id and aborts its open
transaction. `stamp_created` stamps the ingest time where a row gives no created_timestamp,
never below an earlier stamp.

Thread-safety: all methods may be called from any thread; `_lock` guards the acknowledged
positions and the last stamp, `_producer_lock` the producer's creation.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import numpy as np
import pyarrow as pa

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

    def batch_id(self) -> str:
        """A new batch id: `<transactional id>/<uuid>` (the writer part is what staging groups by)."""
        return f"{self.transactional_id}/{uuid.uuid4().hex}"

    def produce(self, slices: list[Slice]) -> dict[int, int]:
        """One transaction: the slices (one batch), then a commit record per partition they
        touch; {partition: offset of its commit record} after the commit."""
        if not slices:
            return {}
        batch = slices[0].batch
        touched = sorted({s.partition for s in slices})
        commits = [Slice(p, slices[0].view, "commit", b"", batch) for p in touched]
        positions = self._writer().produce([*slices, *commits])
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
            if self._producer is None:
                self._producer = TransactionalProducer(
                    self.bootstrap_servers, self.topic, self.transactional_id, self.options
                )
            return self._producer
