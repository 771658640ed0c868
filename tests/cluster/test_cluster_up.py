"""`rickhouse cluster up` with `kafka.bootstrap_servers: embedded`, `apply --cluster`, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from cluster.broker import free_port
from tests.cluster._nodes import DEFS, ROOT

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def test_cluster_up_serves_then_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    router_url = f"http://127.0.0.1:{free_port()}"
    node_url = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "cluster.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "partitions": 2,
                "kafka": {"bootstrap_servers": "embedded", "topic": "up"},
                "nodes": [{"name": "a", "url": node_url, "root": "data/a", "partitions": "0-1"}],
                "router": {"url": router_url},
            }
        )
    )
    (tmp_path / "defs.yaml").write_text(yaml.safe_dump(DEFS))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    up = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "cluster", "up", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert up.poll() is None, up.stdout.read() if up.stdout else ""
            try:
                if httpx.get(f"{router_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "cluster up did not serve in time"
            time.sleep(0.2)
        applied = subprocess.run(
            [sys.executable, "-m", "app.cli", "apply", str(tmp_path / "defs.yaml"),
             "--cluster", str(config)],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
        )  # fmt: skip
        assert applied.returncode == 0, applied.stdout + applied.stderr
        rows = {"item_id": ["a", "b"], "event_timestamp": ["2025-01-01T00:00:00Z"] * 2}
        r = httpx.post(f"{router_url}/v1/ingest/item_stats", json={**rows, "price": [1.5, 2.5]})
        assert r.status_code == 200, r.text
        read = {"features": ["item_stats:price"], "entities": {"item_id": ["b", "a", "z"]}}
        got = httpx.post(f"{router_url}/get-online-features", json=read).json()
        assert got["results"][1]["values"] == [2.5, 1.5, None]
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
    for url in (router_url, node_url):
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/health", timeout=1)
