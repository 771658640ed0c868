"""The audit in bounded memory: millions of entities from many small batches, a small DuckDB
memory limit, many buckets, then a SIGKILLed round of small ingests; it answers without error
and still finds a planted mismatch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from offline import OfflineOptions
from online import TreeOptions
from store import FeatureStore
from tests.store.conftest import DEFS

TS = pa.timestamp("ns", tz="UTC")
T0 = 3_786_912_000_000_000_000  # 2090: far from any ttl
DAY = 86_400 * 10**9


def _options(bucket_entities: int) -> dict:
    return {
        "tree_options": TreeOptions(background=False, t_wait_s=0.0),
        "offline_options": OfflineOptions(
            background=False,
            buffer_rows=200_000,
            duckdb_memory_limit="64MB",
            duckdb_threads=2,
            latest_bucket_entities=bucket_entities,
        ),
    }


def _users(ids: np.ndarray, rng: np.random.Generator) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "user_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array(T0 + rng.integers(0, 3 * DAY, n), TS),
            "ctr": pa.array(rng.random(n, dtype=np.float32)),
            "country": pa.array(np.char.add("c", (ids % 97).astype(str))),
            "emb": pa.FixedSizeListArray.from_arrays(
                pa.array(rng.random(4 * n, dtype=np.float32)), 4
            ),
        }
    )


def _items(ids: np.ndarray, rng: np.random.Generator) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "item_id": pa.array(np.char.add("item-é", ids.astype(str))),
            "event_timestamp": pa.array(T0 + rng.integers(0, 3 * DAY, n), TS),
            "price": pa.array(rng.random(n)),
            "ctr": pa.array(rng.random(n)),
        }
    )


def _fill(fs: FeatureStore, users: int, items: int, rng: np.random.Generator) -> None:
    """20k-row batches of new entities, then 500-row batches rewriting random ones."""
    for lo in range(0, users, 20_000):
        fs.ingest("user_stats", _users(np.arange(lo, min(users, lo + 20_000)), rng))
    for lo in range(0, items, 20_000):
        fs.ingest("item_stats", _items(np.arange(lo, min(items, lo + 20_000)), rng))
    for _ in range(40):
        fs.ingest("user_stats", _users(rng.choice(users, 500, replace=False), rng))
        fs.ingest("item_stats", _items(rng.choice(items, 500, replace=False), rng))


def _plant_offline_mismatch(fs: FeatureStore, view: str) -> None:
    """A newer offline version of one entity that the online engine never sees."""
    off = fs._off
    assert off is not None
    storage = fs._snap.storage[view]
    names = off.schema(storage).names
    row = off.scan(storage, columns=names).read_next_batch().slice(0, 1)
    ts = pa.array([T0 + 10 * DAY], pa.int64()).cast(TS)  # newer than every ingested row
    row = row.set_column(names.index("event_timestamp"), "event_timestamp", ts)
    off.append(storage, row, off.max_seq() + 1)


def test_many_buckets_agree_and_find_a_planted_mismatch(tmp_path) -> None:
    rng = np.random.default_rng(7)
    with FeatureStore(tmp_path, **_options(bucket_entities=3_000)) as fs:
        fs.apply(DEFS)
        _fill(fs, 30_000, 20_000, rng)
        fs.flush()
        report = fs.audit()
        assert report["user_stats"]["entities"] == 30_000
        assert report["item_stats"]["entities"] == 20_000
        assert all(r["mismatches"] == 0 for r in report.values()), report
        _plant_offline_mismatch(fs, "item_stats")
        report = fs.audit()
        assert report["item_stats"]["mismatches"] == 1
        assert report["item_stats"]["examples"][0]["problem"] == "differs"
        assert report["user_stats"]["mismatches"] == 0


@pytest.mark.slow
def test_millions_of_entities_from_small_batches_audit_in_bounded_memory(tmp_path) -> None:
    rng = np.random.default_rng(11)
    with FeatureStore(tmp_path, **_options(bucket_entities=400_000)) as fs:
        fs.apply(DEFS)
        _fill(fs, 2_000_000, 1_000_000, rng)
        report = fs.audit()  # part of each side still in memory (memtable, offline buffer)
        assert report["user_stats"]["entities"] == 2_000_000
        assert report["item_stats"]["entities"] == 1_000_000
        assert all(r["mismatches"] == 0 for r in report.values()), report
        _plant_offline_mismatch(fs, "user_stats")
        assert fs.audit()["user_stats"]["mismatches"] == 1
        planted = fs.audit()
    _sigkilled_ingest(tmp_path)  # small batches, killed: the reopened store replays its log
    with FeatureStore(tmp_path, **_options(bucket_entities=400_000)) as fs:
        report = fs.audit()
        assert report["user_stats"]["entities"] >= planted["user_stats"]["entities"]
        assert report["user_stats"]["mismatches"] == 1  # the planted one, nothing else
        assert all(r["mismatches"] == 0 for v, r in report.items() if v != "user_stats"), report


def _sigkilled_ingest(root: Path) -> None:
    """One crash round: tests/store/_crash_child ingests small batches into `root` until it is
    SIGKILLed (after some acknowledged batches)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.store._crash_child", str(root), "0", "loop"],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    acks = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            acks += line.startswith("ACK")
            if acks >= 40:
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert acks >= 40, "the child died before acknowledging its batches"
