"""Crash safety with real processes: SIGKILL at random moments, and a cut or corrupted log tail.

After every reopen, every acknowledged batch is readable online and offline, a batch that was
in flight is there whole or not at all, and audit() reports 0 mismatches.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

from store.commitlog import scan_segment
from tests.store._crash_child import HOT, batch
from tests.store.conftest import open_store

REPO = Path(__file__).resolve().parents[2]
CHILD = [sys.executable, "-m", "tests.store._crash_child"]


def _spawn(root: Path, rnd: int, mode: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*CHILD, str(root), str(rnd), mode],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def _read_acks(proc: subprocess.Popen, acks: list[tuple[int, int]], ready: threading.Event) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY"):
            ready.set()
        elif line.startswith("ACK"):
            _, seq, i = line.split()
            acks.append((int(seq), int(i)))


def _presence(fs, batches: list[tuple[int, int]]) -> dict[tuple[int, int], tuple[bool, bool, str]]:
    """Per batch (rnd, i): (all its unique rows present, none present, where rows are missing),
    online and offline.

    One online lookup and one point-in-time join per view for all the batches together.
    """
    by_view: dict[str, list[tuple[tuple[int, int], dict]]] = {}
    for b in batches:
        view, data = batch(*b)
        by_view.setdefault(view, []).append((b, data))
    out: dict[tuple[int, int], tuple[bool, bool, str]] = {}
    for view, items in by_view.items():
        feat = "ctr" if view == "user_stats" else "score"
        cols = ["user_id"] + (["item_id"] if view == "pair" else [])
        n = len(items[0][1]["user_id"]) - HOT
        keys = {c: [v for _, d in items for v in d[c][:n]] for c in cols}
        ts = [pd.Timestamp(t) for _, d in items for t in d["event_timestamp"][:n]]
        online = fs.get_online_features([f"{view}:{feat}"], keys).to_dict()[feat]
        ent = pd.DataFrame({**keys, "event_timestamp": ts})
        offline = fs.get_historical_features(ent, [f"{view}:{feat}"]).column(feat).to_pylist()
        for k, (b, data) in enumerate(items):
            want = data[feat][:n]
            on, off = online[k * n : (k + 1) * n], offline[k * n : (k + 1) * n]
            where = "+".join(s for s, got in (("online", on), ("offline", off)) if got != want)
            out[b] = (not where, on == [None] * n and off == [None] * n, where)
    return out


def _verify(root: Path, acked: dict[int, list[int]], in_flight: dict[int, int]) -> None:
    fs = open_store(root)
    try:
        done = [(rnd, i) for rnd, batches in acked.items() for i in batches]
        flying = list(in_flight.items())
        seen = _presence(fs, done + flying)
        lost = [(b, seen[b][2]) for b in done if not seen[b][0]]
        assert not lost, f"acknowledged batches ((round, batch), store) {lost[:5]} are lost"
        for b in flying:
            assert seen[b][0] or seen[b][1], f"batch {b} was in flight and is partly visible"
        # the HOT entities hold at least the last acknowledged batch of the last round
        last_rnd = max(acked)
        if acked[last_rnd]:
            top = (
                max(i for i in acked[last_rnd] if i % 2 == 0)
                if any(i % 2 == 0 for i in acked[last_rnd])
                else None
            )
            if top is not None:
                marker = float(last_rnd * 100_000 + top)
                got = fs.get_online_features(
                    ["user_stats:ctr"], {"user_id": list(range(HOT))}
                ).to_dict()["ctr"]
                assert all(v >= marker for v in got)
        report = fs.audit()
        assert all(r["mismatches"] == 0 for r in report.values()), report
    finally:
        fs.close()


def test_sigkill_at_random_moments_loses_no_acknowledged_batch(tmp_path) -> None:
    rng = random.Random(2024)
    root = tmp_path / "root"
    acked: dict[int, list[int]] = {}
    rounds = 6
    for rnd in range(rounds):
        proc = _spawn(root, rnd, "loop")
        acks: list[tuple[int, int]] = []
        ready = threading.Event()
        reader = threading.Thread(target=_read_acks, args=(proc, acks, ready))
        reader.start()
        assert ready.wait(120), "child did not start"
        time.sleep(rng.uniform(0.05, 0.8))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join()
        acked[rnd] = [i for _, i in acks]
        seqs = [s for s, _ in acks]
        assert seqs == sorted(set(seqs))
        in_flight = {rnd: (max(acked[rnd]) + 1 if acked[rnd] else 0)}
        # each round checks its own batches; the last one checks every round's again
        _verify(root, acked if rnd == rounds - 1 else {rnd: acked[rnd]}, in_flight)
    assert sum(len(v) for v in acked.values()) > 20, "the child acknowledged too little to test"


def test_commit_log_cut_or_corrupted_at_random_offsets(tmp_path) -> None:
    crashed = tmp_path / "crashed"
    proc = _spawn(crashed, 0, "exit:24")
    out, _ = proc.communicate(timeout=120)
    acks = [
        (int(s), int(i))
        for _, s, i in (ln.split() for ln in out.splitlines() if ln.startswith("ACK"))
    ]
    assert len(acks) == 24
    (segment,) = (crashed / "commitlog").glob("*.log")
    data = segment.read_bytes()
    spans, end = scan_segment(data)
    assert end == len(data)
    seq_to_batch = dict(acks)
    apply_seqs = [s.seq for s in spans if s.seq not in seq_to_batch]  # not an ingest record
    assert not apply_seqs
    rng = random.Random(99)
    for trial in range(6):
        root = tmp_path / f"t{trial}"
        shutil.copytree(crashed, root)
        seg = root / "commitlog" / segment.name
        pos = rng.randrange(len(data))
        if trial % 2:
            seg.write_bytes(data[:pos])
        else:
            damaged = bytearray(data)
            damaged[pos] ^= 0x5A
            seg.write_bytes(bytes(damaged))
        kept = [seq_to_batch[s.seq] for s in spans if s.end <= pos]
        lost = [seq_to_batch[s.seq] for s in spans if s.end > pos]
        fs = open_store(root)
        try:
            seen = _presence(fs, [(0, i) for i in kept + lost])
            for i in kept:
                assert seen[(0, i)][0], f"batch {i} before the cut at byte {pos} is lost"
            for i in lost:
                assert seen[(0, i)][1], f"batch {i} behind the cut at byte {pos} is visible"
            assert fs.last_seq == (max(s.seq for s in spans if s.end <= pos) if kept else 0)
            assert all(r["mismatches"] == 0 for r in fs.audit().values())
        finally:
            fs.close()
