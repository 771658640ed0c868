"""rickhouse beyond one machine: partitions, the cluster config, and the Kafka log between them.

Layer: `app -> cluster -> store`. This package never imports `app` or an HTTP server. Public
names are listed in `__all__`; everything else is an implementation detail.
"""

from cluster.broker import TestBroker, find_tansu
from cluster.config import ClusterConfig, KafkaConfig, NodeConfig, RouterConfig, parse_partitions
from cluster.consumer import ConsumerOptions, PartitionConsumer
from cluster.deletes import DELETE
from cluster.errors import (
    BrokerError,
    ClusterConfigError,
    ClusterError,
    ConsumeError,
    FencedError,
    ProduceError,
    RoutingError,
    TopicMismatchError,
)
from cluster.export import ExportFailedError, TabletPinError
from cluster.partitioning import (
    Routing,
    key_texts,
    murmur2,
    partition_of,
    partitions_of,
    split_by_partition,
    view_routing,
)
from cluster.producer import ProducerOptions, TransactionalProducer
from cluster.record import COMMIT, CONTROL, DATA, LogRecord, Slice
from cluster.router import NoReplicaError, Router, RouterOptions
from cluster.topic import ensure_topic, topic_partitions
from cluster.writer import BatchWriter

__all__ = [
    "COMMIT",
    "CONTROL",
    "DATA",
    "DELETE",
    "BatchWriter",
    "BrokerError",
    "ClusterConfig",
    "ClusterConfigError",
    "ClusterError",
    "ConsumeError",
    "ConsumerOptions",
    "ExportFailedError",
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
]
