"""Helpers of the router tests: `rickhouse router` as a child process, a started cluster.

`RouterProcess` runs `python -m app.cli router` as a child that Linux kills when the test
process dies; `stop()` (SIGTERM, then SIGKILL) always runs from the tests' `finally`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from cluster.broker import _die_with_parent
from tests.cluster._nodes import ROOT, NodeProcess


class RouterProcess:
    """`rickhouse router --cluster CONFIG` as a child process."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.url = yaml.safe_load(config.read_text())["router"]["url"]
        self.proc: subprocess.Popen[bytes] | None = None
        # no idle keep-alive connections: a request sent on one just as the server's keep-alive
        # timeout closes it is reset (the race any HTTP client has with an idle connection)
        self.client = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))

    def start(self, ready_timeout_s: float = 60.0) -> None:
        t0 = time.monotonic()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "router", "--cluster", str(self.config),
                 "--log-level", "warning"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=_die_with_parent,
            )  # fmt: skip
        while time.monotonic() - t0 < ready_timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.url}/v1/stats", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"router not serving within {ready_timeout_s} s; see {self.log}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None
        self.client.close()

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.post(f"{self.url}{path}", **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.put(f"{self.url}{path}", **kw)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(f"{self.url}{path}")


@contextmanager
def running(config: Path, tmp: Path, names: list[str]) -> Iterator[tuple[RouterProcess, dict]]:
    """Start the named nodes and the router; stop them all on exit."""
    nodes = {n: NodeProcess(config, n, tmp / f"{n}.log") for n in names}
    router = RouterProcess(config, tmp / "router.log")
    try:
        for n in nodes.values():
            n.start()
        router.start()
        yield router, nodes
    finally:
        router.stop()
        for n in nodes.values():
            n.stop()
