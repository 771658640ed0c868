"""cluster/broker.py and cluster/topic.py against the Tansu test broker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cluster.broker import TestBroker, find_tansu
from cluster.errors import BrokerError, TopicMismatchError
from cluster.topic import ensure_topic, topic_partitions


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child counts as dead: Popen.wait reaped it already in stop()
    return True


@pytest.mark.timeout(60)
def test_broker_starts_answers_and_stops_even_on_error(tmp_path: Path) -> None:
    assert find_tansu().is_file()
    b = TestBroker(tmp_path / "tansu.log")
    with pytest.raises(RuntimeError, match="boom"), b:
        pid = b.pid
        assert pid is not None and _alive(pid)
        assert topic_partitions(b.bootstrap_servers, "absent") is None
        raise RuntimeError("boom")
    assert not _alive(pid)
    assert b.pid is None
    assert "listening on" in (tmp_path / "tansu.log").read_text()
    with pytest.raises(BrokerError, match="not running"):
        _ = b.bootstrap_servers
    b.stop()  # idempotent


def test_missing_binary_is_a_broker_error(tmp_path: Path) -> None:
    b = TestBroker(tmp_path / "log", binary=tmp_path / "no-such-tansu", start_timeout_s=2)
    with pytest.raises(BrokerError, match="does not exist"):
        b.start()
    assert b.pid is None


@pytest.mark.timeout(60)
def test_ensure_topic_is_idempotent_and_refuses_another_count(broker: TestBroker) -> None:
    servers = broker.bootstrap_servers
    assert ensure_topic(servers, "orders", 6) is True
    assert ensure_topic(servers, "orders", 6) is False
    assert topic_partitions(servers, "orders") == 6
    with pytest.raises(TopicMismatchError, match="has 6 partitions but the cluster has 8"):
        ensure_topic(servers, "orders", 8)
