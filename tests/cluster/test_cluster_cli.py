"""`rickhouse cluster init` and `rickhouse cluster status` (in-process through typer's runner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from app.cli import cli
from cluster.broker import TestBroker
from cluster.topic import topic_partitions
from tests.cluster._nodes import write_config

pytestmark = pytest.mark.timeout(60)


def test_init_is_idempotent_and_refuses_another_partition_count(
    broker: TestBroker, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.yaml", broker.bootstrap_servers, "cli-init", 4, [("a", "0-3")]
    )
    runner = CliRunner()
    first = runner.invoke(cli, ["cluster", "init", str(config)])
    assert first.exit_code == 0, first.output
    assert "created 4 partitions" in first.output
    again = runner.invoke(cli, ["cluster", "init", str(config)])
    assert again.exit_code == 0 and "already exists" in again.output
    assert topic_partitions(broker.bootstrap_servers, "cli-init") == 4
    cfg = yaml.safe_load(config.read_text())
    cfg["partitions"] = 8
    cfg["nodes"][0]["partitions"] = "0-7"
    config.write_text(yaml.safe_dump(cfg))
    refused = runner.invoke(cli, ["cluster", "init", str(config)])
    assert refused.exit_code == 1
    assert "has 4 partitions but the cluster has 8" in refused.output


def test_status_reports_a_down_node_and_exits_1(broker: TestBroker, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml", broker.bootstrap_servers, "cli-status", 2, [("a", "0-1")]
    )
    result = CliRunner().invoke(
        cli, ["cluster", "status", str(config), "--json", "--timeout", "0.5"]
    )
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["nodes"][0]["alive"] is False and out["partitions_without_live_owner"] == [0, 1]
    table = CliRunner().invoke(cli, ["cluster", "status", str(config), "--timeout", "0.5"])
    assert "down" in table.output and "without a live owner" in table.output
