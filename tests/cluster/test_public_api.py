"""The cluster package's public surface is exactly its `__all__`, and every name is importable."""

from __future__ import annotations

import cluster

PUBLIC = {
    "BatchWriter",
    "BrokerError",
    "COMMIT",
    "CONTROL",
    "ClusterConfig",
    "ClusterConfigError",
    "ClusterError",
    "ConsumeError",
    "ConsumerOptions",
    "ExportFailedError",
    "DATA",
    "DELETE",
    "FencedError",
    "KafkaConfig",
    "LogRecord",
    "NoReplicaError",
    "NodeConfig",
    "PartitionConsumer",
    "ProduceError",
    "ProducerOptions",
    "Router",
    "RouterConfig",
    "RouterOptions",
    "Routing",
    "RoutingError",
    "Slice",
    "TabletPinError",
    "TestBroker",
    "TopicMismatchError",
    "TransactionalProducer",
    "ensure_topic",
    "find_tansu",
    "key_texts",
    "murmur2",
    "parse_partitions",
    "partition_of",
    "partitions_of",
    "split_by_partition",
    "topic_partitions",
    "view_routing",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(cluster.__all__) == PUBLIC and len(cluster.__all__) == len(PUBLIC)
    for name in cluster.__all__:
        obj = getattr(cluster, name)
        assert isinstance(obj, str) or obj.__module__.startswith("cluster.")


def test_errors_share_one_base() -> None:
    for name in PUBLIC:
        if name.endswith("Error"):
            assert issubclass(getattr(cluster, name), cluster.ClusterError)
