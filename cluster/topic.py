"""The cluster's topics: the data topic with P partitions and its one-partition commits topic.

`ensure_topic` is idempotent: it creates the topic when absent and refuses (TopicMismatchError,
naming both counts) a topic that has another partition count, because P never changes: the
partition of every entity depends on it. Stateless functions; safe from any thread.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from cluster.commits import commits_topic
from cluster.errors import ClusterError, TopicMismatchError

log = logging.getLogger(__name__)


def topic_partitions(bootstrap_servers: str, topic: str, timeout_s: float = 10.0) -> int | None:
    """The partition count of `topic`, or None if it does not exist."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers}, logger=log)
    return _partition_count(admin, topic, timeout_s)


def ensure_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    replication_factor: int = -1,
    timeout_s: float = 10.0,
) -> bool:
    """Create `topic` with `partitions` partitions if absent, and its commits topic
    (`<topic>-commits`, one partition: cluster/commits.py); True if this call created `topic`.

    replication_factor: -1 takes the broker's default (a production cluster sets 3).
    Raises TopicMismatchError if the topic exists with another partition count.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap_servers}, logger=log)
    created = _ensure_one(admin, topic, partitions, replication_factor, timeout_s)
    _ensure_one(admin, commits_topic(topic), 1, replication_factor, timeout_s)
    return created


def _ensure_one(
    admin: AdminClient, topic: str, partitions: int, replication_factor: int, timeout_s: float
) -> bool:
    existing = _partition_count(admin, topic, timeout_s)
    created = False
    if existing is None:
        future = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor)],
            request_timeout=timeout_s,
        )[topic]
        try:
            future.result(timeout_s)
            created = True
            log.info("created topic %s with %d partitions", topic, partitions)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ClusterError(f"cannot create topic {topic!r}: {e.args[0].str()}") from e
        existing = _partition_count(admin, topic, timeout_s)
    if existing != partitions:
        raise TopicMismatchError(
            f"topic {topic!r} has {existing} partitions but the cluster has {partitions}; "
            "the partition count never changes: use another topic name or the original count"
        )
    return created


def _partition_count(admin: AdminClient, topic: str, timeout_s: float) -> int | None:
    try:
        # all topics, not topic=...: a request naming the topic may auto-create it on brokers
        # with auto.create.topics.enable
        md = admin.list_topics(timeout=timeout_s)
    except KafkaException as e:
        raise ClusterError(f"cannot reach the Kafka broker: {e.args[0].str()}") from e
    t = md.topics.get(topic)
    if t is None or (t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        return None
    if t.error is not None:
        raise ClusterError(f"topic {topic!r}: {t.error.str()}")
    return len(t.partitions)
