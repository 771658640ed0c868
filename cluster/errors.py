"""Errors of the cluster package: one base, a few meaningful subclasses.

Messages say what was wrong and what to do. Only `app/` maps them to HTTP or exit codes.
"""

from __future__ import annotations


class ClusterError(Exception):
    """Base of every error raised by `cluster`."""


class ClusterConfigError(ClusterError):
    """cluster.yaml (or its dict) is malformed; the message names the field."""


class RoutingError(ClusterError):
    """A batch cannot be routed: a missing or null key column, an unknown `partition_by`."""


class BrokerError(ClusterError):
    """The test broker could not be found, started or stopped."""


class TopicMismatchError(ClusterError):
    """The topic exists with another partition count than the cluster's; P never changes."""


class ProduceError(ClusterError):
    """A transaction was aborted: nothing of it is committed. Safe to retry the batch."""


class FencedError(ProduceError):
    """A newer producer with the same transactional.id took over; this producer is dead.

    Nothing of the current transaction is committed. Do not retry with this producer.
    """


class ConsumeError(ClusterError):
    """The consumer hit a fatal error; recreate it from the last durable position."""
