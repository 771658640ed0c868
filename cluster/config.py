"""cluster.yaml: the partitions, the Kafka topic, the nodes and the router, parsed and validated.

```yaml
partitions: 8                      # fixed at creation
kafka: {bootstrap_servers: 127.0.0.1:9092, topic: rickhouse}   # or bootstrap_servers: embedded
nodes:
  - {name: a, url: http://127.0.0.1:8101, root: cluster-data/a, partitions: "0-3"}
router: {url: http://127.0.0.1:8000}
```

`ClusterConfig.load` refuses anything malformed with a ClusterConfigError naming the field
(`nodes[1].partitions`). Invariants after a successful load: every partition in [0, P) is owned
by at least one node; node names, urls and roots are unique; the router's url is no node's url.
A relative `root` is resolved against the directory of the file it was read from. All classes
are frozen; safe from any thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from cluster.errors import ClusterConfigError

EMBEDDED = "embedded"  # kafka.bootstrap_servers value: start the test broker in-process
MAX_PARTITIONS = 1 << 16  # far above any sensible P; catches typos such as 80000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's legal topic names
_HOSTPORT = re.compile(r"[A-Za-z0-9._-]+:[0-9]{1,5}|\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}")


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str  # "host:port[,host:port...]" or EMBEDDED
    topic: str

    @property
    def embedded(self) -> bool:
        return self.bootstrap_servers == EMBEDDED


@dataclass(frozen=True)
class NodeConfig:
    name: str
    url: str
    root: Path
    partitions: tuple[int, ...]  # sorted, unique, each in [0, P)


@dataclass(frozen=True)
class RouterConfig:
    url: str


@dataclass(frozen=True)
class ClusterConfig:
    partitions: int
    kafka: KafkaConfig
    nodes: tuple[NodeConfig, ...]
    router: RouterConfig

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any]) -> ClusterConfig:
        """Parse a cluster.yaml path, or a dict of the same shape (roots relative to the cwd)."""
        if isinstance(source, Mapping):
            return cls.from_dict(source, Path("."))
        path = Path(source)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as e:
            raise ClusterConfigError(f"cannot read cluster config {str(path)!r}: {e}") from e
        except yaml.YAMLError as e:
            raise ClusterConfigError(f"{path}: not valid YAML: {e}") from e
        return cls.from_dict(data, path.parent)

    @classmethod
    def from_dict(cls, data: object, base_dir: Path) -> ClusterConfig:
        """Validate `data` (the parsed YAML); relative roots resolve against base_dir."""
        d = _mapping(data, "cluster config", ("partitions", "kafka", "nodes", "router"))
        p = d.get("partitions")
        if not isinstance(p, int) or isinstance(p, bool) or not 1 <= p <= MAX_PARTITIONS:
            raise ClusterConfigError(
                f"partitions: must be an int in [1, {MAX_PARTITIONS}], got {p!r}"
            )
        kafka = _kafka(d.get("kafka"))
        raw_nodes = d.get("nodes")
        if not isinstance(raw_nodes, list) or not raw_nodes:
            raise ClusterConfigError("nodes: must be a non-empty list of nodes")
        nodes = tuple(_node(n, f"nodes[{i}]", p, base_dir) for i, n in enumerate(raw_nodes))
        r = _mapping(d.get("router"), "router", ("url",))
        router = RouterConfig(url=_url(r.get("url"), "router.url"))
        config = cls(partitions=p, kafka=kafka, nodes=nodes, router=router)
        config._check_cluster()
        return config

    def node(self, name: str) -> NodeConfig:
        """The node called `name`; ClusterConfigError listing the names if none is."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise ClusterConfigError(
            f"no node named {name!r} in the cluster config; nodes are {[n.name for n in self.nodes]}"
        )

    def owners(self, partition: int) -> tuple[NodeConfig, ...]:
        """The nodes (replicas) that own `partition`, in config order."""
        return tuple(n for n in self.nodes if partition in n.partitions)

    def _check_cluster(self) -> None:
        for field in ("name", "url", "root"):
            seen: dict[object, int] = {}
            for i, n in enumerate(self.nodes):
                value = getattr(n, field)
                if value in seen:
                    raise ClusterConfigError(
                        f"nodes[{i}].{field}: {str(value)!r} is already used by nodes[{seen[value]}]; "
                        f"each node needs its own {field}"
                    )
                seen[value] = i
        for i, n in enumerate(self.nodes):
            if n.url == self.router.url:
                raise ClusterConfigError(f"router.url: {n.url!r} is also the url of nodes[{i}]")
        owned = set().union(*(n.partitions for n in self.nodes))
        orphans = [q for q in range(self.partitions) if q not in owned]
        if orphans:
            raise ClusterConfigError(
                f"nodes: partitions {_format_ranges(orphans)} are owned by no node; "
                "every partition needs at least one"
            )


def parse_partitions(spec: object, where: str, partitions: int) -> tuple[int, ...]:
    """ "0-3", "0,2,5-7", an int, or a list of those -> sorted unique partition numbers.

    Every number must be in [0, partitions); ranges are inclusive and ascending.
    """
    items: list[object]
    if isinstance(spec, list):
        items = list(spec)
    elif isinstance(spec, str):
        items = [s.strip() for s in spec.split(",")]
    else:
        items = [spec]
    out: set[int] = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            lo = hi = item
        elif isinstance(item, str) and re.fullmatch(r"\s*\d+\s*(-\s*\d+\s*)?", item):
            bounds = [int(b) for b in item.split("-")]
            lo, hi = bounds[0], bounds[-1]
        else:
            raise ClusterConfigError(
                f'{where}: {item!r} is not a partition or range; write e.g. "0-3" or "0,2,5-7"'
            )
        if lo > hi:
            raise ClusterConfigError(f"{where}: range {lo}-{hi} runs backwards; write {hi}-{lo}")
        if lo < 0 or hi >= partitions:
            raise ClusterConfigError(
                f"{where}: partition {hi if hi >= partitions else lo} is outside [0, {partitions})"
            )
        out.update(range(lo, hi + 1))
    if not out:
        raise ClusterConfigError(f"{where}: names no partition")
    return tuple(sorted(out))


def _kafka(data: object) -> KafkaConfig:
    d = _mapping(data, "kafka", ("bootstrap_servers", "topic"))
    servers = d.get("bootstrap_servers")
    if isinstance(servers, list):
        servers = ",".join(str(s) for s in servers)
    if not isinstance(servers, str) or not servers.strip():
        raise ClusterConfigError(
            f"kafka.bootstrap_servers: must be 'host:port[,host:port]' or '{EMBEDDED}', got {servers!r}"
        )
    servers = servers.strip()
    if servers != EMBEDDED:
        for s in servers.split(","):
            if not _HOSTPORT.fullmatch(s.strip()):
                raise ClusterConfigError(
                    f"kafka.bootstrap_servers: {s.strip()!r} is not host:port (or use '{EMBEDDED}')"
                )
    topic = d.get("topic")
    if not isinstance(topic, str) or not _TOPIC.fullmatch(topic) or topic in (".", ".."):
        raise ClusterConfigError(
            f"kafka.topic: {topic!r} is not a Kafka topic name (letters, digits, '.', '_', '-')"
        )
    return KafkaConfig(bootstrap_servers=servers, topic=topic)


def _node(data: object, where: str, partitions: int, base_dir: Path) -> NodeConfig:
    d = _mapping(data, where, ("name", "url", "root", "partitions"))
    name = d.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ClusterConfigError(
            f"{where}.name: {name!r} is not a node name (letters, digits, '_', '.', '-'; at most 64)"
        )
    root = d.get("root")
    if not isinstance(root, str) or not root.strip():
        raise ClusterConfigError(f"{where}.root: must be a directory path, got {root!r}")
    if "partitions" not in d:
        raise ClusterConfigError(f'{where}.partitions: missing; write e.g. "0-3"')
    return NodeConfig(
        name=name,
        url=_url(d.get("url"), f"{where}.url"),
        root=(base_dir / root).resolve(),
        partitions=parse_partitions(d["partitions"], f"{where}.partitions", partitions),
    )


def _url(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ClusterConfigError(f"{where}: must be an http url such as http://127.0.0.1:8000")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        raise ClusterConfigError(f"{where}: {value!r} is not a valid url: {e}") from e
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ClusterConfigError(
            f"{where}: {value!r} must be http(s)://host:port, e.g. http://127.0.0.1:8000"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ClusterConfigError(f"{where}: {value!r} must have no path, query or fragment")
    return f"{parts.scheme}://{parts.netloc}"


def _mapping(data: object, where: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ClusterConfigError(f"{where}: must be a mapping with {list(allowed)}, got {data!r}")
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ClusterConfigError(f"{where}: unknown field(s) {unknown}; allowed: {list(allowed)}")
    return data


def _format_ranges(values: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"; values sorted ascending, unique."""
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
