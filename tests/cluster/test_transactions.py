"""Kafka transactions on the test broker (Tansu): what holds, and where it differs from Kafka.

Each test states Kafka's documented behaviour. Where Tansu does otherwise the test is marked
xfail(strict=True) with what Tansu does, so a broker upgrade that fixes it turns the run red and
the workaround can go.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.broker import TestBroker
from cluster.consumer import ConsumerOptions, PartitionConsumer
from cluster.errors import FencedError, ProduceError
from cluster.producer import TransactionalProducer
from cluster.record import CONTROL, LogRecord, Slice

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]

ABORTED_VISIBLE = (
    "Tansu 0.6.0 writes the abort marker but sends no aborted-transaction list in Fetch "
    "responses, so read_committed consumers receive aborted records as if committed"
)


def _read(
    broker: TestBroker, topic: str, parts: list[int], seconds: float, committed: bool = True
) -> list[LogRecord]:
    """Everything readable on `parts` within `seconds` (no sentinel can bound an absence)."""
    c = PartitionConsumer(
        broker.bootstrap_servers,
        topic,
        dict.fromkeys(parts, 0),
        ConsumerOptions(read_committed=committed),
    )
    out: list[LogRecord] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            out += c.poll(0.2)
    finally:
        c.close()
    return out


def _values(records: list[LogRecord]) -> list[bytes]:
    return sorted(r.value for r in records)


@pytest.fixture
def killed_producer(broker: TestBroker, topic: str) -> Iterator[str]:
    """A child producer that opened a transaction on partitions 0 and 1, then was SIGKILLed."""
    txid = f"zombie-{topic}"
    child = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("killed_producer.py")),
            broker.bootstrap_servers,
            topic,
            txid,
            "0,1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    yield txid


def test_open_transaction_is_invisible_until_commit(broker: TestBroker, topic: str) -> None:
    p = TransactionalProducer(broker.bootstrap_servers, topic, "tx-open")
    raw = p._producer  # drive begin/commit by hand to look inside the open transaction
    raw.begin_transaction()
    raw.produce(topic, value=b"pending", partition=0)
    assert raw.flush(10) == 0
    assert _read(broker, topic, [0], 1.5) == []
    assert _values(_read(broker, topic, [0], 1.0, committed=False)) == [b"pending"]
    raw.commit_transaction(10)
    assert _values(_read(broker, topic, [0], 1.5)) == [b"pending"]


def test_aborted_records_stay_in_the_raw_log(broker: TestBroker, topic: str) -> None:
    """As in Kafka: an abort leaves the records in the log; read_uncommitted sees them."""
    p = TransactionalProducer(broker.bootstrap_servers, topic, "tx-abort-raw")
    p._producer.begin_transaction()
    p._producer.produce(topic, value=b"aborted", partition=1)
    p._producer.flush(10)
    p._producer.abort_transaction(10)
    p.produce([Slice(1, "v", CONTROL, b"after")])
    assert _values(_read(broker, topic, [1], 1.5, committed=False)) == [b"aborted", b"after"]


@pytest.mark.xfail(strict=True, reason=ABORTED_VISIBLE)
def test_read_committed_skips_aborted_records(broker: TestBroker, topic: str) -> None:
    p = TransactionalProducer(broker.bootstrap_servers, topic, "tx-abort")
    p._producer.begin_transaction()
    p._producer.produce(topic, value=b"aborted", partition=1)
    p._producer.flush(10)
    p._producer.abort_transaction(10)
    p.produce([Slice(1, "v", CONTROL, b"after")])
    assert _values(_read(broker, topic, [1], 1.5)) == [b"after"]


def test_a_new_producer_fences_the_old_one(broker: TestBroker, topic: str) -> None:
    old = TransactionalProducer(broker.bootstrap_servers, topic, "router-a")
    old.produce([Slice(0, "v", CONTROL, b"first")])
    new = TransactionalProducer(broker.bootstrap_servers, topic, "router-a")
    with pytest.raises(FencedError, match="fenced"):
        old.produce([Slice(0, "v", CONTROL, b"zombie")])
    with pytest.raises(FencedError):
        old.produce([Slice(0, "v", CONTROL, b"zombie-again")])
    new.produce([Slice(0, "v", CONTROL, b"second")])
    assert _values(_read(broker, topic, [0], 1.5)) == [b"first", b"second"]


def test_fencing_error_is_a_produce_error() -> None:
    assert issubclass(FencedError, ProduceError)


def test_killed_producer_holds_back_read_committed_readers(
    broker: TestBroker, topic: str, killed_producer: str
) -> None:
    """The dead transaction's records are invisible, and so is what others commit after them."""
    other = TransactionalProducer(broker.bootstrap_servers, topic, "tx-other")
    other.produce([Slice(0, "v", CONTROL, b"other")])
    assert _read(broker, topic, [0, 1], 2.0) == []
    assert _values(_read(broker, topic, [0, 1], 1.0, committed=False)) == [
        b"killed",
        b"killed",
        b"other",
    ]
    unrelated = TransactionalProducer(broker.bootstrap_servers, topic, "tx-unrelated")
    unrelated.produce([Slice(2, "v", CONTROL, b"free")])
    assert _values(_read(broker, topic, [2], 1.5)) == [b"free"]


@pytest.mark.xfail(
    strict=True,
    reason="Tansu 0.6.0 keeps a committed transaction that wrote to a partition held back by "
    "another open transaction invisible on every partition it wrote (and the same producer's "
    "later transactions too); Kafka holds back only the blocked partition",
)
def test_a_blocked_partition_holds_back_only_itself(
    broker: TestBroker, topic: str, killed_producer: str
) -> None:
    other = TransactionalProducer(broker.bootstrap_servers, topic, "tx-mixed")
    other.produce([Slice(0, "v", CONTROL, b"blocked"), Slice(2, "v", CONTROL, b"free")])
    other.produce([Slice(3, "v", CONTROL, b"later")])
    assert _values(_read(broker, topic, [2, 3], 2.0)) == [b"free", b"later"]


def test_restarted_producer_fences_the_killed_one_and_unblocks_readers(
    broker: TestBroker, topic: str, killed_producer: str
) -> None:
    restarted = TransactionalProducer(broker.bootstrap_servers, topic, killed_producer)
    restarted.produce([Slice(1, "v", CONTROL, b"restarted")])
    assert b"restarted" in _values(_read(broker, topic, [0, 1], 2.0))


@pytest.mark.xfail(strict=True, reason=ABORTED_VISIBLE + " (here: the fenced zombie's records)")
def test_fenced_killed_transaction_leaves_nothing_visible(
    broker: TestBroker, topic: str, killed_producer: str
) -> None:
    restarted = TransactionalProducer(broker.bootstrap_servers, topic, killed_producer)
    restarted.produce([Slice(1, "v", CONTROL, b"restarted")])
    assert _values(_read(broker, topic, [0, 1], 2.0)) == [b"restarted"]


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="Tansu 0.6.0 never times out a transaction: a producer killed mid-transaction "
    "blocks read_committed readers of its partitions until a producer with the same "
    "transactional.id calls init_transactions",
)
def test_transaction_timeout_aborts_a_dead_producers_transaction(
    broker: TestBroker, topic: str, killed_producer: str
) -> None:
    # the child set transaction.timeout.ms=2000; Kafka's coordinator checks every 10 s
    other = TransactionalProducer(broker.bootstrap_servers, topic, "tx-after-timeout")
    other.produce([Slice(0, "v", CONTROL, b"other")])
    time.sleep(10)
    assert b"other" in _values(_read(broker, topic, [0], 3.0))
