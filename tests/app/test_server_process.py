"""A real `rickhouse serve` process on 127.0.0.1 (a free port), started and stopped here:
Feast's remote online-store client flow, kept-alive connections after 4xx, concurrent pushes,
Arrow ingest, and durability across a restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from tests.app.conftest import arrow_ipc, make_root

STARTUP_S = 120  # a cold numba cache compiles the kernels on first open


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(root: Path, port: int) -> list[str]:
    script = shutil.which("rickhouse", path=str(Path(sys.executable).parent))
    base = [script] if script else [sys.executable, "-m", "app.cli"]
    return [
        *base,
        "serve",
        "--root",
        str(root),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


class Server:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RICKHOUSE_")}
        self.log = root.parent / f"server-{self.port}.log"
        self.proc = subprocess.Popen(
            serve_command(root, self.port),
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"server not healthy in {STARTUP_S} s:\n{self.log.read_text()}")

    def stacks(self) -> str:
        """Every server thread's stack (`rickhouse serve` dumps them on SIGUSR1), for a hang."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
        return self.log.read_text()[-20000:]

    def post(self, path: str, timeout: float = 60, **kwargs: object) -> httpx.Response:
        try:
            return httpx.post(self.url + path, timeout=timeout, **kwargs)
        except httpx.TimeoutException:
            pytest.fail(f"POST {path} timed out after {timeout} s; server stacks:\n{self.stacks()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = make_root(tmp_path_factory.mktemp("proc") / "root")
    s = Server(root)
    s.root = root
    yield s
    s.stop()


def test_feast_remote_client_flow(server: Server) -> None:
    """The exact requests of feast.infra.online_stores.remote.RemoteOnlineStore."""
    with httpx.Client(base_url=server.url) as session:
        # online_write_batch: session.post(url, json=req_body); naive UTC isoformat timestamps,
        # `created` null when the rows have none.
        write = {
            "feature_view_name": "user_stats",
            "df": {
                "user_id": [42, 43],
                "ctr": [0.5, 0.75],
                "country": ["SE", "NO"],
                "visits": [4, 5],
                "premium": [True, False],
                "emb": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
                "seen": ["2025-02-01T10:00:00.250000", "2025-02-01T10:00:00"],
                "event_timestamp": ["2025-02-01T12:00:00.500000", "2025-02-01T12:00:00"],
                "created": [None, None],
            },
            "allow_registry_cache": False,
        }
        r = session.post("/write-to-online-store", json=write)
        assert r.status_code == 200, r.text
        # online_read: data=json.dumps(...) (no Content-Type), one join key, "view:feature" refs.
        requested = ["ctr", "country", "emb"]
        body = json.dumps(
            {
                "features": [f"user_stats:{f}" for f in requested],
                "entities": {"user_id": [42, 43, 44]},
            }
        )
        r = session.post("/get-online-features", content=body)
        assert r.status_code == 200, r.text
        response_json = json.loads(r.text)
        # ... which it reads like this:
        event_ts = datetime.fromisoformat(
            response_json["results"][1]["event_timestamps"][0].replace("Z", "+00:00")
        )
        assert event_ts.isoformat() == "2025-02-01T12:00:00.500000+00:00"
        rows = []
        for i in range(3):
            values = {}
            for index, name in enumerate(response_json["metadata"]["feature_names"]):
                if name in requested:
                    result = response_json["results"][index]
                    values[name] = (
                        result["values"][i] if result["statuses"][i] == "PRESENT" else None
                    )
            rows.append(values)
        assert rows == [
            {"ctr": 0.5, "country": "SE", "emb": [1.0, 0.0, 0.0]},
            {"ctr": 0.75, "country": "NO", "emb": [0.0, 1.0, 0.0]},
            {"ctr": None, "country": None, "emb": None},
        ]
        # Feast's error handling: json.loads(response.json()) -> {"module", "class", "message"}
        r = session.post(
            "/get-online-features",
            content=json.dumps({"features": ["nope:x"], "entities": {"user_id": [1]}}),
        )
        detail = json.loads(r.json())
        assert r.status_code == 404 and detail["class"] == "FeatureViewNotFoundException"


def _raw_exchange(sock: socket.socket, body: bytes) -> tuple[int, bytes]:
    request = (
        b"POST /get-online-features HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ")[1]), rest[:length]


def test_connection_stays_open_after_bad_requests(server: Server) -> None:
    good = json.dumps({"entities": {"user_id": [1]}, "features": ["user_stats:visits"]}).encode()
    bads = [
        b"{broken",
        json.dumps({"entities": {"user_id": [1]}, "features": ["nope:x"]}).encode(),
        json.dumps({"entities": {"user_id": ["x"]}, "features": ["user_stats:visits"]}).encode(),
        json.dumps({"entities": {"item_id": ["a"]}, "features": ["user_stats:visits"]}).encode(),
    ]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for bad in bads:
            status, _ = _raw_exchange(sock, bad)
            assert 400 <= status < 500
            status, body = _raw_exchange(sock, good)  # same socket: the connection was kept
            assert status == 200 and json.loads(body)["results"][1]["values"] == [10]


def test_concurrent_pushes_and_arrow_ingest_all_succeed(server: Server) -> None:
    def push(i: int) -> int:
        df = {
            "user_id": [5000 + i],
            "ctr": [i / 100],
            "country": ["X"],
            "visits": [i],
            "premium": [False],
            "emb": [None],
            "seen": [None],
            "event_timestamp": ["2025-02-02T00:00:00Z"],
        }
        body = {"push_source_name": "user_stats_push", "df": df, "to": "online_and_offline"}
        return server.post("/push", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(push, range(32))) == [200] * 32
    n = 5000
    table = pa.table(
        {
            "user_id": pa.array(range(20_000, 20_000 + n), pa.int64()),
            "event_timestamp": pa.array([1_738_000_000_000_000_000] * n, pa.int64()).cast(
                pa.timestamp("ns", tz="UTC")
            ),
            "ctr": pa.array([0.5] * n, pa.float32()),
            "country": pa.array(["Y"] * n),
            "visits": pa.array(range(n), pa.int64()),
            "premium": pa.array([False] * n),
            "emb": pa.FixedSizeListArray.from_arrays(pa.array([1.0] * 3 * n, pa.float32()), 3),
            "seen": pa.array([None] * n, pa.timestamp("ns", tz="UTC")),
        }
    )
    r = server.post(
        "/v1/ingest/user_stats",
        content=arrow_ipc(table),
        headers={"Content-Type": "application/vnd.apache.arrow.stream"},
    )
    assert r.status_code == 200 and r.json()["rows"] == n
    r = server.post(
        "/get-online-features",
        json={
            "entities": {"user_id": [5000, 5031, 20_000 + n - 1]},
            "features": ["user_stats:visits"],
        },
    )
    assert r.json()["results"][1]["values"] == [0, 31, n - 1]
    audit = server.post("/v1/audit", timeout=120).json()
    assert all(v["mismatches"] == 0 for v in audit.values())
    metrics = httpx.get(server.url + "/metrics").text
    assert (
        'rickhouse_http_requests_total{endpoint="/push",method="POST",status="200"} 32' in metrics
    )


def test_acknowledged_writes_survive_a_restart(server: Server) -> None:
    """Stop the server (SIGINT), start a new one on the same root: everything acknowledged is there."""
    r = httpx.post(
        server.url + "/get-online-features",
        json={"entities": {"user_id": [42, 5031, 24_999]}, "features": ["user_stats:visits"]},
    )
    before = r.json()["results"][1]
    assert server.stop() == 0
    again = Server(server.root)
    try:
        r = httpx.post(
            again.url + "/get-online-features",
            json={"entities": {"user_id": [42, 5031, 24_999]}, "features": ["user_stats:visits"]},
        )
        assert r.json()["results"][1] == before
    finally:
        assert again.stop() == 0
