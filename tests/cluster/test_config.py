"""cluster/config.py: cluster.yaml parsed exactly as documented; every error names its field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from cluster.config import ClusterConfig, parse_partitions
from cluster.errors import ClusterConfigError

EXAMPLE = """\
partitions: 8                      # fixed at creation
kafka:
  bootstrap_servers: 127.0.0.1:9092
  topic: rickhouse                 # one topic with `partitions` partitions
nodes:
  - {name: a,  url: http://127.0.0.1:8101, root: cluster-data/a,  partitions: "0-3"}
  - {name: b,  url: http://127.0.0.1:8102, root: cluster-data/b,  partitions: "4-7"}
  - {name: a2, url: http://127.0.0.1:8103, root: cluster-data/a2, partitions: "0-3"}   # a replica
router: {url: http://127.0.0.1:8000}
"""


def _base() -> dict[str, Any]:
    return {
        "partitions": 4,
        "kafka": {"bootstrap_servers": "127.0.0.1:9092", "topic": "rickhouse"},
        "nodes": [
            {"name": "a", "url": "http://127.0.0.1:8101", "root": "d/a", "partitions": "0-1"},
            {"name": "b", "url": "http://127.0.0.1:8102", "root": "d/b", "partitions": "2,3"},
        ],
        "router": {"url": "http://127.0.0.1:8000"},
    }


def test_issue_example_parses(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(EXAMPLE)
    c = ClusterConfig.load(path)
    assert c.partitions == 8
    assert c.kafka.bootstrap_servers == "127.0.0.1:9092" and c.kafka.topic == "rickhouse"
    assert not c.kafka.embedded
    assert [n.name for n in c.nodes] == ["a", "b", "a2"]
    assert c.node("b").partitions == (4, 5, 6, 7)
    assert c.node("a").root == (tmp_path / "cluster-data" / "a").resolve()
    assert [n.name for n in c.owners(2)] == ["a", "a2"]
    assert c.router.url == "http://127.0.0.1:8000"
    with pytest.raises(ClusterConfigError, match="no node named 'z'"):
        c.node("z")


def test_embedded_broker_and_partition_lists() -> None:
    d = _base()
    d["kafka"]["bootstrap_servers"] = "embedded"
    d["nodes"][0]["partitions"] = [0, "1"]
    d["nodes"][1]["partitions"] = "2-2, 3"
    c = ClusterConfig.load(d)
    assert c.kafka.embedded
    assert c.nodes[0].partitions == (0, 1) and c.nodes[1].partitions == (2, 3)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("0-3", (0, 1, 2, 3)),
        ("3,1", (1, 3)),
        ("0-1,1-2", (0, 1, 2)),
        (2, (2,)),
        ([1, "2-3"], (1, 2, 3)),
    ],
)
def test_partition_specs(spec: object, expected: tuple[int, ...]) -> None:
    assert parse_partitions(spec, "x", 4) == expected


def _error(mutate: Any) -> str:
    d = copy.deepcopy(_base())
    mutate(d)
    with pytest.raises(ClusterConfigError) as e:
        ClusterConfig.load(d)
    return str(e.value)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.update(partitions=0), "partitions:"),
        (lambda d: d.update(partitions="8"), "partitions:"),
        (lambda d: d.update(partitions=True), "partitions:"),
        (lambda d: d.update(extra=1), "unknown field(s) ['extra']"),
        (lambda d: d.pop("kafka"), "kafka:"),
        (lambda d: d["kafka"].update(bootstrap_servers=""), "kafka.bootstrap_servers"),
        (lambda d: d["kafka"].update(bootstrap_servers="localhost"), "kafka.bootstrap_servers"),
        (lambda d: d["kafka"].update(topic="a b"), "kafka.topic"),
        (lambda d: d["kafka"].update(topics="x"), "kafka: unknown field"),
        (lambda d: d.update(nodes=[]), "nodes:"),
        (lambda d: d["nodes"][1].update(name=""), "nodes[1].name"),
        (lambda d: d["nodes"][1].update(url="127.0.0.1:8102"), "nodes[1].url"),
        (lambda d: d["nodes"][1].update(url="http://127.0.0.1"), "nodes[1].url"),
        (lambda d: d["nodes"][1].update(url="http://127.0.0.1:8102/x"), "nodes[1].url"),
        (lambda d: d["nodes"][1].update(root=""), "nodes[1].root"),
        (lambda d: d["nodes"][1].pop("partitions"), "nodes[1].partitions: missing"),
        (lambda d: d["nodes"][1].update(partitions="2-4"), "nodes[1].partitions: partition 4"),
        (lambda d: d["nodes"][1].update(partitions="3-2"), "nodes[1].partitions: range 3-2"),
        (lambda d: d["nodes"][1].update(partitions="two"), "nodes[1].partitions"),
        (lambda d: d["nodes"][1].update(partitions="-1"), "nodes[1].partitions"),
        (lambda d: d["nodes"][1].update(partitions="2"), "partitions 3 are owned by no node"),
        (
            lambda d: d["nodes"][1].update(name="a"),
            "nodes[1].name: 'a' is already used by nodes[0]",
        ),
        (lambda d: d["nodes"][1].update(url="http://127.0.0.1:8101"), "nodes[1].url"),
        (lambda d: d["nodes"][1].update(root="d/a"), "nodes[1].root"),
        (lambda d: d["nodes"][1].update(port=1), "nodes[1]: unknown field"),
        (lambda d: d["router"].update(url="http://127.0.0.1:8101"), "router.url"),
        (lambda d: d.pop("router"), "router:"),
    ],
)
def test_errors_name_the_field(mutate: Any, field: str) -> None:
    assert field in _error(mutate)


def test_orphan_partitions_are_listed_as_ranges() -> None:
    d = _base()
    d["partitions"] = 12
    msg = _error(lambda x: x.update(d))
    assert "partitions 4-11 are owned by no node" in msg


def test_unreadable_or_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ClusterConfigError, match="cannot read"):
        ClusterConfig.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("partitions: [")
    with pytest.raises(ClusterConfigError, match="not valid YAML"):
        ClusterConfig.load(bad)
    bad.write_text("- 1\n")
    with pytest.raises(ClusterConfigError, match="cluster config: must be a mapping"):
        ClusterConfig.load(bad)
