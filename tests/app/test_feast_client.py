"""Feast's own SDK (feast 0.67, `online_store: {type: remote}`) against a real `rickhouse serve`.

Feast lives in `.venv-feast` (`make test` installs it; its pins never touch `.venv`), so its side
runs in a subprocess: tests/app/feast_client/client.py applies Feast definitions mirroring
`user_stats` (tests/app/conftest.py), writes with `write_to_online_store` and
`push(..., to=PushMode.ONLINE)` (both POST /write-to-online-store), reads with
`get_online_features(...).to_dict()` (stored, on-demand and aggregate features), provokes errors, and prints what happened as JSON. Here we
assert on that, and check through rickhouse's own endpoints that Feast's writes reached both
stores. The expected values are the rows client.py writes, copied out by hand.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pytest

from tests.app.conftest import make_root
from tests.app.test_server_process import Server

pytestmark = pytest.mark.slow  # ~10 s: a server process, and Feast's import and apply

REPO = Path(__file__).resolve().parents[2]
FEAST_PYTHON = REPO / ".venv-feast" / "bin" / "python"
CLIENT = Path(__file__).resolve().parent / "feast_client" / "client.py"
CLIENT_TIMEOUT_S = 300  # typically ~5 s; generous for a loaded 2-core machine
ARROW = "application/vnd.apache.arrow.stream"

IDS = [100, 101, 200, 201, 1, 999_999]  # client.py READ_IDS
# After the write and the push: 100 from the push (newer), 101 from the write (the pushed row
# is older), 200 and 201 pushed, 1 ingested before the server started, 999999 never written.
EXPECTED = {
    "user_id": IDS,
    "ctr": [0.0625, 0.75, 0.5, -1.5, 0.25, None],
    "country": ["FI", "NO", "DE", None, "NL", None],
    "visits": [70, 8, 1, 2, 10, None],
    "premium": [False, False, False, True, True, None],
    "emb": [[0.5, 0.5, 0.5], [0.0, -1.0, 2.0], [3.0, 2.0, 1.0], None, [1.0, 2.0, 3.0], None],
}
EXPECTED_AFTER_WRITE = {
    "user_id": IDS,
    "ctr": [0.125, 0.75, None, None, 0.25, None],
    "country": ["SE", "NO", None, None, "NL", None],
    "visits": [7, 8, None, None, 10, None],
    "premium": [True, False, None, None, True, None],
    "emb": [[1.0, 0.5, 0.25], [0.0, -1.0, 2.0], None, None, [1.0, 2.0, 3.0], None],
}
EXPECTED_SEEN = [
    "2025-03-02T12:00:00Z",
    "2025-03-01T09:30:00Z",
    "2025-03-02T00:00:00Z",
    "2025-03-02T00:00:01Z",
    "2025-01-30T11:00:00Z",
    None,
]
EXPECTED_SEEN_AFTER_WRITE = [
    "2025-03-01T08:00:00Z",
    "2025-03-01T09:30:00Z",
    None,
    None,
    "2025-01-30T11:00:00Z",
    None,
]


def instants(values: list[Any]) -> list[pd.Timestamp | None]:
    """Timestamp feature values as instants: Feast's own server answers epoch seconds (int),
    rickhouse RFC 3339 strings; either is right if it names the instant that was written."""
    out: list[pd.Timestamp | None] = []
    for v in values:
        if v is None:
            out.append(None)
        elif isinstance(v, int):
            out.append(pd.Timestamp(v, unit="s", tz="UTC"))
        else:
            out.append(pd.Timestamp(v).tz_convert("UTC"))
    return out


def run_feast_client(url: str, repo: Path) -> dict[str, Any]:
    """Run client.py against `url` (Feast's repo in `repo`, created); its JSON report."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RICKHOUSE_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["FEAST_USAGE"] = "False"  # no telemetry
    cmd = [str(FEAST_PYTHON), str(CLIENT), "--url", url, "--repo", str(repo)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, env=env, cwd=repo.parent
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"Feast client still running after {CLIENT_TIMEOUT_S} s:\n{exc.stderr}")
    if proc.returncode != 0:
        pytest.fail(f"Feast client exited {proc.returncode}:\n{proc.stderr[-10000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


# An on-demand view over user_stats: `boost` is request data (client.py sends it in entity rows).
USER_BOOST = {
    "name": "user_boost",
    "sources": ["user_stats"],
    "request": [{"name": "boost", "dtype": "float64"}],
    "features": [
        {"name": "boosted_ctr", "dtype": "float64", "expr": "ctr * boost"},
        {"name": "heavy", "dtype": "bool", "expr": "coalesce(visits, 0) > 50"},
    ],
}


# An aggregation view keyed by user: its aggregates are features Feast reads like any other.
USER_TXN = {
    "name": "user_txn",
    "entities": ["user"],
    "events": [{"name": "amount", "dtype": "float64"}],
    "aggregations": [
        {"column": "amount", "function": "sum", "windows": ["1d", "7d"]},
        {"column": "amount", "function": "count", "windows": ["7d"]},
    ],
}
AGG_FEATURES = ["user_txn:amount_sum_1d", "user_txn:amount_sum_7d", "user_txn:amount_count_7d"]
AGG_IDS = [100, 1, 999_999]  # client.py reads these; 999999 has no event
# Events relative to the test's start, far from every window's edge (online T is the read time).
TXNS = [(100, 2, 1.5), (100, 3 * 24, 10.0), (100, 10 * 24, 100.0), (1, 1, 4.25)]  # (id, h ago, $)
EXPECTED_AGG = {
    "user_id": AGG_IDS,
    "amount_sum_1d": [1.5, 4.25, None],
    "amount_sum_7d": [11.5, 4.25, None],
    "amount_count_7d": [2, 1, 0],
}


def with_on_demand_view(root: Path) -> Path:
    """`root` with conftest's DEFS, USER_BOOST and USER_TXN applied, and TXNS ingested."""
    import time

    from store import FeatureStore
    from tests.app.conftest import DEFS

    now = time.time_ns()
    events = pa.table(
        {
            "user_id": pa.array([t[0] for t in TXNS], pa.int64()),
            "event_timestamp": pa.array(
                [now - t[1] * 3600 * 10**9 for t in TXNS], pa.timestamp("ns", "UTC")
            ),
            "amount": [t[2] for t in TXNS],
        }
    )
    with FeatureStore(root) as fs:
        defs = {**DEFS, "feature_views": [*DEFS["feature_views"], USER_TXN]}
        fs.apply({**defs, "on_demand_views": [USER_BOOST]})
        fs.ingest("user_txn", events)
    return root


@pytest.fixture(scope="module")
def feast_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict]]:
    """A server over conftest's store, and what the Feast client reported after one run on it."""
    if not FEAST_PYTHON.exists():  # a failure, not a skip: this test is the proof
        pytest.fail(
            f"{FEAST_PYTHON} is missing: `make test` installs Feast 0.67 there "
            "(or `make feast-venv` alone)"
        )
    tmp = tmp_path_factory.mktemp("feast")
    server = Server(with_on_demand_view(make_root(tmp / "root")))
    try:
        yield server, run_feast_client(server.url, tmp / "feast_repo")
    finally:
        server.stop()


def ok(results: dict[str, Any], step: str) -> Any:
    """The result of a step that must have succeeded; else the Feast traceback as the failure."""
    outcome = results[step]
    assert "ok" in outcome, f"Feast step {step!r} raised:\n{outcome['traceback']}"
    return outcome["ok"]


def test_feast_writes_and_pushes_are_accepted(feast_run: tuple[Server, dict]) -> None:
    server, results = feast_run
    assert results["feast_version"] == "0.67.0"
    assert ok(results, "write") is None
    assert ok(results, "push") is None
    # One write_to_online_store and one push to a source feeding one view: two POSTs, both 200.
    metrics = httpx.get(server.url + "/metrics").text
    wire = 'rickhouse_http_requests_total{endpoint="/write-to-online-store",method="POST",'
    assert wire + 'status="200"} 2' in metrics
    assert wire + 'status="4' not in metrics


def test_feast_reads_what_it_wrote_and_none_for_unknown_entities(
    feast_run: tuple[Server, dict],
) -> None:
    _, results = feast_run
    # "seen" (a timestamp) is checked as an instant in test_timestamp_features_keep_the_written_instant
    after_write = {k: v for k, v in ok(results, "read_after_write").items() if k != "seen"}
    assert after_write == EXPECTED_AFTER_WRITE
    read = {k: v for k, v in ok(results, "read").items() if k != "seen"}
    assert read == EXPECTED
    assert ok(results, "read_full_names") == {"user_id": [100], "user_stats__visits": [70]}


def test_timestamp_features_keep_the_written_instant(feast_run: tuple[Server, dict]) -> None:
    """Feast sends a UnixTimestamp feature as integer epoch seconds (unix_timestamp_val), and
    its own feature server stores and answers it as such: the Feast endpoints must read an
    integer in a timestamp feature column as seconds, and Feast must read back the same instant."""
    server, results = feast_run
    r = server.post(
        "/get-online-features",
        json={"entities": {"user_id": IDS}, "features": ["user_stats:seen"]},
    )
    assert r.status_code == 200, r.text
    assert instants(r.json()["results"][1]["values"]) == instants(EXPECTED_SEEN)
    assert instants(ok(results, "read_after_write")["seen"]) == instants(EXPECTED_SEEN_AFTER_WRITE)
    assert instants(ok(results, "read")["seen"]) == instants(EXPECTED_SEEN)


def test_feast_raises_its_own_exceptions(feast_run: tuple[Server, dict]) -> None:
    server, results = feast_run
    # Reads go to the server (the remote store does not check refs client-side): rickhouse's 404
    # carries Feast's double-encoded error, and Feast re-raises the class it names.
    assert results["unknown_view"]["raised"] == "feast.errors.FeatureViewNotFoundException"
    assert "nope" in results["unknown_view"]["message"]
    assert results["unknown_feature"]["raised"] == "feast.errors.FeatureViewNotFoundException"
    assert "nope" in results["unknown_feature"]["message"]
    metrics = httpx.get(server.url + "/metrics").text
    assert (
        'rickhouse_http_requests_total{endpoint="/get-online-features",method="POST",'
        'status="404"} 2' in metrics
    )
    # Writes to unknown names fail in Feast's client against its own registry, before sending:
    # write_to_online_store raises a bare KeyError (Feast 0.67's lookup), push its own class.
    assert results["write_unknown_view"]["raised"] == "builtins.KeyError"
    assert results["push_unknown_source"]["raised"] == "feast.errors.PushSourceNotFoundException"


def test_feast_writes_reach_both_stores(feast_run: tuple[Server, dict]) -> None:
    server, _ = feast_run
    features = ["user_stats:visits", "user_stats:country", "user_stats:emb"]
    r = server.post(
        "/get-online-features", json={"entities": {"user_id": IDS}, "features": features}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metadata"]["feature_names"] == ["user_id", "visits", "country", "emb"]
    names = body["metadata"]["feature_names"]
    values = {name: res["values"] for name, res in zip(names, body["results"], strict=True)}
    assert values == {k: EXPECTED[k] for k in ("user_id", "visits", "country", "emb")}
    assert body["results"][1]["statuses"] == ["PRESENT"] * 5 + ["NOT_FOUND"]
    assert body["results"][2]["statuses"][3] == "NULL_VALUE"  # 201 was pushed with no country
    # Offline, point in time: every Feast row is history, the late push for 101 included.
    entities = {
        "user_id": [100, 100, 101, 101, 200, 201],
        "event_timestamp": [
            "2025-03-01T12:00:00Z",  # after the write, before the newer push
            "2025-03-03T00:00:00Z",
            "2025-02-15T00:00:00Z",  # after the late pushed row, before the write
            "2025-03-03T00:00:00Z",
            "2025-03-03T00:00:00Z",
            "2025-03-03T00:00:00Z",
        ],
    }
    r = server.post(
        "/v1/training-export",
        json={"entities": entities, "features": features},
        headers={"Accept": ARROW},
    )
    assert r.status_code == 200, r.text
    table = pa.ipc.open_stream(io.BytesIO(r.content)).read_all()
    assert table.column("visits").to_pylist() == [7, 70, 800, 8, 1, 2]
    assert table.column("country").to_pylist() == ["SE", "FI", "XX", "NO", "DE", None]
    audit = server.post("/v1/audit", timeout=120).json()
    assert audit["user_stats"]["entities"] == 7  # 1, 2, 3 ingested; 100, 101, 200, 201 by Feast
    assert all(view["mismatches"] == 0 for view in audit.values()), audit


def test_feast_reads_on_demand_features_with_request_data(feast_run: tuple[Server, dict]) -> None:
    _, results = feast_run
    # user 100 after the push: ctr 0.0625, visits 70; 999999 was never written (ctr null)
    assert ok(results, "read_on_demand") == {
        "user_id": [100, 999_999],
        "boosted_ctr": [0.125, None],
        "heavy": [True, False],
    }
    # without its request field the server answers 422 naming it, and Feast raises
    missing = results["on_demand_missing_request"]
    assert "raised" in missing and "boost" in missing["message"]


def test_feast_reads_aggregate_features(feast_run: tuple[Server, dict]) -> None:
    server, results = feast_run
    assert ok(results, "read_aggregates") == EXPECTED_AGG
    # the same values as the store computes them, through its own endpoint
    r = server.post(
        "/get-online-features", json={"entities": {"user_id": AGG_IDS}, "features": AGG_FEATURES}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    names = body["metadata"]["feature_names"]
    values = {name: res["values"] for name, res in zip(names, body["results"], strict=True)}
    assert values == EXPECTED_AGG
