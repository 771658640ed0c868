"""`rickhouse cluster up` (every node and the router as children of one command) and
`rickhouse apply --cluster` (definitions through the cluster's router).

`cluster up` creates the topic (idempotent), starts each node, waits for it to serve, then the
router; Ctrl-C (or SIGTERM) stops the router, then the nodes (SIGTERM, SIGKILL after a grace
period). With `kafka.bootstrap_servers: embedded` it first starts the Tansu test broker (memory
only: the log is lost when it stops; the tablets keep what they applied, so restart with a fresh
node root after the broker is gone). A child that dies stops the whole group with its exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console

console = Console(soft_wrap=True)
READY_TIMEOUT_S = 120.0
STOP_GRACE_S = 30.0


def cluster_up(config_path: Path, log_dir: Path | None = None) -> int:
    """Run the cluster of config_path until Ctrl-C; returns the exit code."""
    from cluster.broker import TestBroker
    from cluster.config import ClusterConfig
    from cluster.topic import ensure_topic

    config = ClusterConfig.load(config_path)
    logs = log_dir or config_path.parent / "cluster-logs"
    logs.mkdir(parents=True, exist_ok=True)
    broker: TestBroker | None = None
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started in the background
    try:
        servers = config.kafka.bootstrap_servers
        if config.kafka.embedded:
            broker = TestBroker(logs / "broker.log").start()
            servers = broker.bootstrap_servers
            console.print(f"embedded test broker on {servers} (memory only)")
        ensure_topic(servers, config.kafka.topic, config.partitions)
        for n in config.nodes:
            cmd = ["node", "--cluster", str(config_path), "--name", n.name]
            children.append((n.name, _spawn(cmd, servers, logs / f"node-{n.name}.log")))
            _wait(f"{n.url}/health", children[-1])
            console.print(f"node {n.name} serving partitions {list(n.partitions)} on {n.url}")
        cmd = ["router", "--cluster", str(config_path)]
        children.append(("router", _spawn(cmd, servers, logs / "router.log")))
        _wait(f"{config.router.url}/v1/stats", children[-1])
        console.print(f"router on {config.router.url}; logs in {logs}; Ctrl-C stops everything")
        while True:
            for name, proc in children:
                if proc.poll() is not None:
                    console.print(f"[red]{name} exited {proc.returncode}; stopping[/red]")
                    return proc.returncode or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        stopping = True
        return 0
    finally:
        for _name, proc in reversed(children):
            _stop(proc)
        if broker is not None:
            broker.stop()
        if stopping:
            console.print("stopped")


def _spawn(args: list[str], servers: str, log: Path) -> subprocess.Popen[bytes]:
    from cluster.broker import _die_with_parent

    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args, "--bootstrap-servers", servers],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            preexec_fn=_die_with_parent,
            start_new_session=True,  # Ctrl-C reaches this process only; it stops the children
        )


def _wait(url: str, child: tuple[str, subprocess.Popen[bytes]]) -> None:
    name, proc = child
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise typer.Exit(proc.returncode or 1)
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    console.print(f"[red]{name} not serving within {READY_TIMEOUT_S:.0f} s[/red]")
    raise typer.Exit(1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def apply_to_cluster(file: Path, config_path: Path) -> None:
    """PUT the definitions file to the cluster's router; prints its answer, exit 1 if refused."""
    from cluster.config import ClusterConfig
    from cluster.errors import ClusterError

    try:
        config = ClusterConfig.load(config_path)
    except ClusterError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None
    url = f"{config.router.url}/v1/definitions"
    try:
        r = httpx.put(
            url, content=file.read_bytes(), headers={"content-type": "application/yaml"}, timeout=60
        )
    except httpx.HTTPError as e:
        console.print(f"[red]error:[/red] the router at {url} did not answer: {e}")
        raise typer.Exit(1) from None
    if r.status_code != 200:
        console.print(f"[red]error:[/red] {r.status_code} {r.text}")
        raise typer.Exit(1)
    console.print(f"applied {file} to the cluster of {config_path}")
    console.print_json(r.text)
