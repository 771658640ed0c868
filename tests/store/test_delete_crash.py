"""Crash safety of deletes: SIGKILL while deleting and purging (compaction) loses no
acknowledged batch or delete and never leaves an entity half deleted (online one way, offline
the other, or a delete applied to some of its entities only)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.store._delete_crash_child import DELETED, batch, ids
from tests.store.conftest import open_store

REPO = Path(__file__).resolve().parents[2]


def _run_round(root: Path, rnd: int, wait_s: float) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.store._delete_crash_child", str(root), str(rnd)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("READY"):
                ready.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert ready.wait(120), "child did not start"
    time.sleep(wait_s)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join()
    return lines


def _state(fs, rnd: int, i: int) -> tuple[list[bool], list[bool]]:
    """(online found, offline found) per entity of batch i of round rnd."""
    k = ids(rnd, i)
    on = fs.get_online_features(["user_stats:ctr"], {"user_id": k}).to_dict()["ctr"]
    ts = batch(rnd, i)["event_timestamp"]
    ent = pd.DataFrame({"user_id": k, "event_timestamp": [pd.Timestamp(t) for t in ts]})
    off = fs.get_historical_features(ent, ["user_stats:ctr"]).column("ctr").to_pylist()
    return [v is not None for v in on], [v is not None for v in off]


@pytest.mark.slow
def test_sigkill_during_deletes_and_purges(tmp_path) -> None:
    rng = random.Random(7)
    root = tmp_path / "root"
    total_deletes = 0
    for rnd in range(4):
        lines = _run_round(root, rnd, rng.uniform(0.3, 1.5))
        acked = [int(x.split()[2]) for x in lines if x.startswith("ACK")]
        deleted = {int(x.split()[2]) for x in lines if x.startswith("DELACK")}
        going = {int(x.split()[1]) for x in lines if x.startswith("DELGO")} - deleted
        total_deletes += len(deleted)
        fs = open_store(root)
        try:
            for i in acked:
                on, off = _state(fs, rnd, i)
                assert on == off, f"batch {i}: online {on} vs offline {off}"
                head, tail = on[:DELETED], on[DELETED:]
                assert all(tail), f"batch {i}: acknowledged rows lost"
                if i in deleted:
                    assert not any(head), f"batch {i}: an acknowledged delete was lost"
                elif i in going:
                    assert all(head) or not any(head), f"batch {i}: half-applied delete"
                else:
                    assert all(head), f"batch {i}: rows lost"
            report = fs.audit()["user_stats"]
            assert report["mismatches"] == 0, report
        finally:
            fs.close()
    assert total_deletes >= 3, "the child acknowledged too few deletes to test"
