"""cluster/producer.py, consumer.py and record.py: slices in one transaction, read back by a node."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka import Producer

from cluster.broker import TestBroker
from cluster.consumer import ConsumerOptions, PartitionConsumer
from cluster.errors import ConsumeError, ProduceError
from cluster.partitioning import partition_of, view_routing
from cluster.producer import ProducerOptions, TransactionalProducer
from cluster.record import CONTROL, DATA, Slice, encode_chunks

pytestmark = pytest.mark.timeout(90)


def _table(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "user_id": pa.array(rng.integers(0, 1_000_000, n), pa.int64()),
            "score": pa.array(rng.random(n)),
            "name": pa.array([f"n{i}" for i in range(n)]),
        }
    )


def test_batch_slices_commit_in_one_transaction_and_read_back_in_order(
    broker: TestBroker, topic: str
) -> None:
    t = _table(1000)
    slices = view_routing(["user_id"]).split(t, 4)
    producer = TransactionalProducer(broker.bootstrap_servers, topic, "router-1")
    position = producer.produce([Slice(p, "user_profile", DATA, s) for p, s in slices.items()])
    assert sorted(position) == sorted(slices)
    consumer = PartitionConsumer(broker.bootstrap_servers, topic, dict.fromkeys(range(4), 0))
    try:
        records = consumer.read_until(position, timeout_s=20)
    finally:
        consumer.close()
    assert {r.partition: r.offset for r in records} == position
    for r in records:
        assert (r.view, r.kind, r.chunk) == ("user_profile", DATA, (0, 1))
        assert r.table().equals(slices[r.partition])


def test_control_records_reach_every_partition(broker: TestBroker, topic: str) -> None:
    producer = TransactionalProducer(broker.bootstrap_servers, topic, "router-ctl")
    defs = b'{"feature_views": []}'
    position = producer.produce([Slice(p, "", CONTROL, defs) for p in range(4)])
    consumer = PartitionConsumer(broker.bootstrap_servers, topic, dict.fromkeys(range(4), 0))
    records = consumer.read_until(position, timeout_s=20)
    consumer.close()
    assert sorted(r.partition for r in records) == [0, 1, 2, 3]
    assert all(r.kind == CONTROL and r.value == defs for r in records)


def test_slices_above_the_record_limit_are_chunked(broker: TestBroker, topic: str) -> None:
    t = _table(20_000, seed=1)
    options = ProducerOptions(max_record_bytes=64_000)
    producer = TransactionalProducer(broker.bootstrap_servers, topic, "router-chunk", options)
    position = producer.produce([Slice(2, "v", DATA, t)])
    consumer = PartitionConsumer(broker.bootstrap_servers, topic, {2: 0})
    records = consumer.read_until(position, timeout_s=20)
    consumer.close()
    n = len(records)
    assert n > 1 and [r.chunk for r in records] == [(i, n) for i in range(n)]
    assert all(len(r.value) <= 64_000 for r in records)
    assert pa.concat_tables([r.table() for r in records]).equals(t)


def test_encode_chunks_respects_the_limit_and_refuses_a_giant_row() -> None:
    t = _table(5000)
    blobs = encode_chunks(t, 20_000)
    assert all(len(b) <= 20_000 for b in blobs) and len(blobs) > 1
    with pytest.raises(ProduceError, match="one row"):
        encode_chunks(pa.table({"s": ["x" * 50_000]}), 20_000)


def test_a_refused_batch_writes_nothing(broker: TestBroker, topic: str) -> None:
    producer = TransactionalProducer(
        broker.bootstrap_servers, topic, "router-refused", ProducerOptions(max_record_bytes=1000)
    )
    good = Slice(0, "v", DATA, _table(3))
    giant = Slice(1, "v", DATA, pa.table({"s": ["x" * 5000]}))
    with pytest.raises(ProduceError, match="one row"):
        producer.produce([good, giant])
    marker = producer.produce([Slice(0, "v", CONTROL, b"sentinel")])
    consumer = PartitionConsumer(
        broker.bootstrap_servers, topic, {0: 0, 1: 0}, ConsumerOptions(read_committed=False)
    )
    records = consumer.read_until(marker, timeout_s=20)
    consumer.close()
    assert [r.value for r in records] == [b"sentinel"]


def test_read_until_names_the_lagging_partition(broker: TestBroker, topic: str) -> None:
    consumer = PartitionConsumer(broker.bootstrap_servers, topic, {3: 0})
    with pytest.raises(ConsumeError, match=r"\{3: 5\}"):
        consumer.read_until({3: 5}, timeout_s=0.5)
    consumer.close()
    consumer.close()


def test_librdkafka_murmur2_partitioner_agrees_with_ours(broker: TestBroker, topic: str) -> None:
    """A keyed producer using Kafka's default partitioner lands where partition_of says."""
    keys = [str(i) for i in range(200)] + [f"user-{i}" for i in range(200)] + ["é", "2:422:ab"]
    p = Producer({"bootstrap.servers": broker.bootstrap_servers, "partitioner": "murmur2_random"})
    landed: dict[str, int] = {}
    for k in keys:

        def record(err: object, msg: object, k: str = k) -> None:
            landed[k] = msg.partition()  # type: ignore[attr-defined]

        p.produce(topic, key=k.encode(), value=b"", on_delivery=record)
    assert p.flush(20) == 0
    assert landed == {k: partition_of(k, 4) for k in keys}
