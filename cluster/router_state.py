"""The router's options and its view of each node (liveness, last seen, applied positions).

`NodeStatus` entries are replaced whole by the router's event loop (cluster/router.py), so a
reader on another thread sees one consistent status per node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.config import NodeConfig
from cluster.errors import ClusterError
from cluster.producer import ProducerOptions


class NoReplicaError(ClusterError):
    """No live replica could answer for a partition (the message names it)."""


@dataclass(frozen=True)
class RouterOptions:
    poll_interval_s: float = 0.5  # how often every node's positions are asked
    request_timeout_s: float = 10.0  # one read sent to one node
    read_wait_ms: int = 5000  # bound on a node waiting to reach a read's position
    producer: ProducerOptions = field(default_factory=ProducerOptions)


@dataclass(frozen=True)
class NodeStatus:
    config: NodeConfig
    alive: bool | None = None  # None: not asked yet
    last_seen: float | None = None  # unix time of its last answer
    error: str | None = None
    state: Mapping[str, Any] = field(default_factory=dict)  # its last /v1/positions

    def applied(self, partition: int) -> int:
        part = self.state.get("partitions", {}).get(str(partition))
        return -1 if part is None else int(part["applied_offset"])
