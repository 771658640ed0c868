"""Crash safety of aggregation views: SIGKILL a process ingesting events at random moments;
after recovery the online aggregates equal the oracle over the acknowledged events (a batch in
flight counts whole or not at all), and audit() reports 0 mismatches."""

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

import store.aggregations.events as agg_events
from store.definitions import Definitions
from store.online_read import read_online
from tests.store._agg_crash_child import DEFS, MIN, T0, USERS, batch
from tests.store._aggregation_oracle import DAY, oracle, same
from tests.store.conftest import open_store

REPO = Path(__file__).resolve().parents[2]


def _run_and_kill(root: Path, rnd: int, rng: random.Random) -> list[int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.store._agg_crash_child", str(root), str(rnd)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    acks: list[int] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("READY"):
                ready.set()
            elif line.startswith("ACK"):
                acks.append(int(line.split()[2]))

    reader = threading.Thread(target=read)
    reader.start()
    assert ready.wait(120), "child did not start"
    time.sleep(rng.uniform(0.1, 0.8))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join()
    return acks


def _events(batches: list[tuple[int, int]], view: str) -> pd.DataFrame:
    rows = []
    for seq, (rnd, i) in enumerate(batches):
        v, data = batch(rnd, i)
        if v != view:
            continue
        for r in range(USERS):
            rows.append({"user_id": r, "shop": data.get("shop", [None] * USERS)[r],
                         "ts": data["event_timestamp"][r].value, "created": 0, "seq": seq, "row": r,
                         "amount": data["amount"][r], "tag": data["tag"][r]})  # fmt: skip
    cols = ["user_id", "shop", "ts", "created", "seq", "row", "amount", "tag"]
    return pd.DataFrame(rows, columns=cols)


@pytest.mark.slow
def test_sigkill_keeps_online_aggregates_equal_to_the_oracle(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(agg_events, "ONLINE_SLACK_NS", 400 * DAY)
    rng = random.Random(11)
    root = tmp_path / "root"
    acked: list[tuple[int, int]] = []
    defs = Definitions.from_dict(DEFS).feature_views
    for rnd in range(4):
        acks = _run_and_kill(root, rnd, rng)
        assert acks == list(range(len(acks)))
        flying = (rnd, len(acks))
        acked += [(rnd, i) for i in acks]
        landed = False
        fs = open_store(root)
        try:
            for view, keys in (("spend", ["user_id"]), ("spend_shop", ["user_id", "shop"])):
                aggs = defs[view].aggregations
                refs = [f"{view}:{a.name}" for a in aggs]
                ents = pd.DataFrame(
                    {"user_id": range(USERS), "shop": [f"s{u % 3}" for u in range(USERS)]}
                )
                t = T0 + (rnd * 2000 + len(acks)) * MIN
                got = read_online(fs._snap, refs, {k: ents[k].tolist() for k in keys}, False,
                                  fs._keys.hash_bits, now_ns=t).to_dict()  # fmt: skip
                ok = []
                for extra in ([], [flying]):
                    exp = oracle(_events(acked + extra, view), keys, ents.assign(t=t), aggs, 0)
                    ok.append(
                        all(same(e, g) for n in exp for e, g in zip(exp[n], got[n], strict=True))
                    )
                assert any(ok), f"round {rnd} view {view}: online aggregates differ from the oracle"
                landed = landed or (ok[1] and not ok[0])
            report = fs.audit()
            assert all(r["mismatches"] == 0 for r in report.values()), report
        finally:
            fs.close()
        if landed:  # the batch in flight was logged before the kill: it is history now
            acked.append(flying)
    assert len(acked) > 20, "the child acknowledged too little to test"
