"""docker/compose.cluster.yaml agrees with the cluster file it mounts (Docker cannot run here).

The compose file starts one service per node of docker/cluster.yaml with that node's name and a
volume at its root, the router on the router's url with its port published, the topic creation
before them, and a Kafka broker whose advertised listener is the cluster's bootstrap server."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml

from cluster import ClusterConfig

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.cluster.yaml").read_text())
CONFIG = ClusterConfig.load(DOCKER / "cluster.yaml")


def test_every_node_has_a_service_with_its_name_url_and_root() -> None:
    services = COMPOSE["services"]
    for node in CONFIG.nodes:
        host = urlsplit(node.url).hostname
        service = services[host]
        argv = service["entrypoint"]
        assert argv[:2] == ["rickhouse", "node"] and argv[argv.index("--name") + 1] == node.name
        targets = {v.split(":")[1] for v in service["volumes"]}  # source:target[:mode]
        assert str(node.root) in targets, (node.name, targets)
        assert f"{host}:{urlsplit(node.url).port}/health" in " ".join(
            service["healthcheck"]["test"]
        )


def test_router_serves_its_url_and_the_topic_is_created_first() -> None:
    services = COMPOSE["services"]
    url = urlsplit(CONFIG.router.url)
    router = services[url.hostname]
    assert router["entrypoint"][:2] == ["rickhouse", "router"]
    assert any(p.endswith(f":{url.port}") for p in router["ports"])
    assert services["cluster-init"]["entrypoint"][:3] == ["rickhouse", "cluster", "init"]
    for node in CONFIG.nodes:
        depends = services[urlsplit(node.url).hostname]["depends_on"]
        assert depends["cluster-init"]["condition"] == "service_completed_successfully"


def test_kafka_advertises_the_clusters_bootstrap_server() -> None:
    env = COMPOSE["services"]["kafka"]["environment"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{CONFIG.kafka.bootstrap_servers}"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1  # one broker here
