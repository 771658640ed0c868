"""The `rickhouse` command line: every command on a real store root (typer's CliRunner), and
the installed console script once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from app.cli import cli
from app.demo.run import example_requests
from tests.app.conftest import DEFS

runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(cli, list(args))
    out = result.stdout + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == code, out
    return out


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    defs = tmp_path / "defs.yaml"
    defs.write_text(yaml.safe_dump(DEFS))
    root = tmp_path / "root"
    out = run("apply", str(defs), "--root", str(root))
    assert "applied" in out
    return root


def _users(n: int, start: int = 0) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table(
        {
            "user_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array(
                [1_738_000_000_000_000_000 + i for i in ids], pa.int64()
            ).cast(pa.timestamp("ns", tz="UTC")),
            "ctr": pa.array([i / 1000 for i in ids], pa.float32()),
            "country": pa.array([f"c{i % 7}" for i in ids]),
            "visits": pa.array(ids, pa.int64()),
            "premium": pa.array([i % 2 == 0 for i in ids]),
            "emb": pa.FixedSizeListArray.from_arrays(
                pa.array([float(i) for i in ids for _ in range(3)], pa.float32()), 3
            ),
            "seen": pa.array([None] * n, pa.timestamp("ns", tz="UTC")),
        }
    )


def test_ingest_parquet_and_csv_then_get(root: Path, tmp_path: Path) -> None:
    pq.write_table(_users(2500), tmp_path / "u.parquet")
    out = run(
        "ingest",
        "user_stats",
        str(tmp_path / "u.parquet"),
        "--root",
        str(root),
        "--batch-rows",
        "1000",
    )
    assert "ingested 2,500 rows into user_stats" in out
    csv = tmp_path / "ui.csv"
    csv.write_text(
        "user_id,item_id,event_timestamp,clicks,score\n"
        "1,a,2025-01-30T00:00:00,3,0.5\n"
        "1,007,2025-01-30T00:00:00Z,4,\n"
        "2,a,2025-01-30 01:00:00+01:00,5,0.25\n"
    )
    assert "ingested 3 rows into user_item" in run(
        "ingest", "user_item", str(csv), "--root", str(root)
    )
    out = run(
        "get",
        "user_stats:visits",
        "user_stats:country",
        "--entity",
        "user_id=7,99999",
        "--root",
        str(root),
        "--json",
    )
    data = json.loads(out)
    assert data["results"][1]["values"] == [7, None] and data["results"][2]["values"] == [
        "c0",
        None,
    ]
    out = run(
        "get",
        "user_item:clicks",
        "user_item:score",
        "-e",
        "user_id=1,1",
        "-e",
        "item_id=007,a",
        "--root",
        str(root),
        "--json",
    )
    data = json.loads(out)
    assert data["results"][2]["values"] == [4, 3]  # "007" stays a string key
    assert data["results"][3]["statuses"] == ["NULL_VALUE", "PRESENT"]
    table_out = run("get", "user_stats:visits", "--entity", "user_id=7", "--root", str(root))
    assert "visits" in table_out and "7" in table_out


def test_export_audit_stats_compact(root: Path, tmp_path: Path) -> None:
    pq.write_table(_users(5), tmp_path / "a.parquet")
    pq.write_table(_users(295, start=5), tmp_path / "b.parquet")
    run("ingest", "user_stats", str(tmp_path / "a.parquet"), "--root", str(root))  # seq 1
    run("ingest", "user_stats", str(tmp_path / "b.parquet"), "--root", str(root))  # seq 2
    ents = tmp_path / "ents.csv"
    ents.write_text(
        "user_id,event_timestamp,label\n5,2026-01-01T00:00:00Z,1\n6,2020-01-01T00:00:00Z,0\n"
    )
    out_file = tmp_path / "out" / "train.parquet"
    out = run(
        "export",
        "--entities",
        str(ents),
        "--features",
        "user_stats:visits,user_stats:ctr",
        "--out",
        str(out_file),
        "--root",
        str(root),
    )
    assert "exported 2 rows" in out and "at seq 2" in out
    table = pq.read_table(out_file)
    assert table.column("visits").to_pylist() == [5, None]  # user 6 asks before its event
    assert table.column("label").to_pylist() == [1, 0]
    pq.write_table(table.select(["user_id", "event_timestamp"]), tmp_path / "e.parquet")
    out = run(
        "export",
        "--entities",
        str(tmp_path / "e.parquet"),
        "--features",
        "user_stats:visits",
        "--out",
        str(tmp_path / "again.parquet"),
        "--as-of-seq",
        "1",
        "--root",
        str(root),
    )
    assert "at seq 1" in out
    assert pq.read_table(tmp_path / "again.parquet").column("visits").to_pylist() == [None, None]
    assert "online and offline agree" in run("audit", "--root", str(root))
    stats = json.loads(run("stats", "--root", str(root)))
    assert stats["last_seq"] == 2 and "user_stats" in stats["online"]
    assert "compacted" in run("compact", "--root", str(root))
    assert "agree" in run("audit", "--root", str(root))


def test_errors_are_one_line_and_exit_1(root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,event_timestamp\n1,2025-01-01\n")
    out = run("ingest", "user_stats", str(bad), "--root", str(root), code=1)
    assert "error:" in out and "missing" in out and "Traceback" not in out
    out = run("ingest", "nope", str(bad), "--root", str(root), code=1)
    assert "nope" in out
    out = run("get", "user_stats:ctr", "--entity", "user_id", "--root", str(root), code=1)
    assert "KEY=V1" in out


def test_demo_is_deterministic_and_prints_working_examples(tmp_path: Path) -> None:
    out = run("demo", "--rows", "2000", "--root", str(tmp_path / "a"), "--port", "8123")
    assert (
        "ingested 2,000 rows" in out and "curl -s http://127.0.0.1:8123/get-online-features" in out
    )
    assert "already" in run("demo", "--rows", "2000", "--root", str(tmp_path / "a"))
    run("demo", "--rows", "2000", "--root", str(tmp_path / "b"))
    a = json.loads(
        run(
            "get",
            "ranking_v1",
            "-e",
            "user_id=1000,1001",
            "-e",
            "item_id=item_000000,item_000001",
            "--root",
            str(tmp_path / "a"),
            "--json",
        )
    )
    b = json.loads(
        run(
            "get",
            "ranking_v1",
            "-e",
            "user_id=1000,1001",
            "-e",
            "item_id=item_000000,item_000001",
            "--root",
            str(tmp_path / "b"),
            "--json",
        )
    )
    assert a["results"][2:] == b["results"][2:]  # same rows, same values (timestamps included)
    assert "PRESENT" in a["results"][2]["statuses"]
    assert len(example_requests(8123)) >= 5


def test_console_script_runs_as_a_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "stats", "--root", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["last_seq"] == 0
