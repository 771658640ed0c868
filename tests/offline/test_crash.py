"""Atomic flush and compaction: a writer SIGKILLed at each step never exposes a partial file.

A real child process runs the store; a hook in the child (not in the store) pauses it at an
exact point of the flush protocol and the parent kills it with SIGKILL there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from offline import OfflineStore
from tests.offline.conftest import DAY, T0, TS, options

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import os, sys, time
    import pyarrow as pa
    sys.path.insert(0, {root!r})
    import offline._fsio as fsio
    import offline.partition as partition
    from offline import OfflineStore, OfflineOptions

    stage, path = sys.argv[1], sys.argv[2]
    TS = pa.timestamp("ns", tz="UTC")

    def batch(n, t0, x):
        return pa.table({{
            "user_id": pa.array(range(n), pa.int64()),
            "event_timestamp": pa.array([t0 + i * 3_600_000_000_000 for i in range(n)], TS),
            "created_timestamp": pa.array([t0] * n, TS),
            "x": pa.array([x] * n, pa.float64()),
        }})

    import threading
    pause_lock = threading.Lock()

    def pause():
        # flush writes partitions in parallel: the first thread here reports, others wait
        with pause_lock:
            print("PAUSED", flush=True)
            time.sleep(600)

    schema = batch(1, 0, 0.0).schema
    # grace 0: the compact stage pauses at the deletion of replaced files
    off = OfflineStore(path, OfflineOptions(background=False, fsync=True, snapshot_grace_s=0))
    off.register_view("v", schema, ["user_id"])
    off.append("v", batch(30, {t0}, 1.0), 1)   # 30 hours: two dates
    off.flush()
    off.append("v", batch(30, {t0}, 2.0), 2)
    off.flush()
    off.append("v", batch(30, {t0}, 3.0), 3)

    real_replace, real_write = os.replace, partition.pq.write_table
    def replace(src, dst):
        name = os.path.basename(str(dst))
        if stage == "before-rename" and name.startswith("part-"):
            pause()
        if stage == "before-manifest" and name == "manifest.json":
            pause()
        real_replace(src, dst)
        if stage == "after-manifest" and name == "manifest.json":
            pause()
    def write_half(table, where, **kw):
        real_write(table, where, **kw)
        data = open(where, "rb").read()
        open(where, "wb").write(data[: len(data) // 2])
        pause()
    os.replace = replace
    partition.pq.write_table = write_half if stage == "mid-write" else real_write
    if stage.startswith("compact"):
        real_unlink = type(fsio.Path()).unlink
        def unlink(self, missing_ok=False):
            pause()
        type(fsio.Path()).unlink = unlink
        off.compact()
    else:
        off.flush()
    print("DONE", flush=True)
    """
)


def _run_until_paused(tmp_path: Path, stage: str) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), t0=T0))
    proc = subprocess.Popen(
        [sys.executable, str(script), stage, str(tmp_path / "store")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        os.kill(proc.pid, signal.SIGKILL)
        if line != "PAUSED":
            pytest.fail(f"child did not reach {stage}: {line!r} {proc.stderr.read()}")
    finally:
        proc.kill()
        proc.wait(timeout=60)


@pytest.mark.parametrize(
    "stage, durable",
    [
        ("mid-write", 2),
        ("before-rename", 2),
        ("before-manifest", 2),
        ("after-manifest", 3),
        ("compact", 2),
    ],
)
def test_sigkill_mid_flush_leaves_no_partial_file_visible(tmp_path, stage, durable) -> None:
    _run_until_paused(tmp_path, stage)
    view_dir = tmp_path / "store" / "offline" / "v"
    on_disk = sorted(p.name for p in view_dir.rglob("*") if p.is_file())
    assert on_disk  # the kill left something behind to clean
    # grace 0: files a compaction retired before the kill are deleted on reopen too
    off = OfflineStore(tmp_path / "store", options(snapshot_grace_s=0))
    assert off.durable_seq("v") == durable
    rows = off.scan("v").read_all()
    assert rows.num_rows == 30 * durable
    assert sorted(set(rows.column("x").to_pylist())) == [float(s) for s in range(1, durable + 1)]
    # exactly the manifest's files remain: temp files and unlisted parts were deleted
    listed = {f"{p.parent.name}/{p.name}" for p in view_dir.rglob("*") if p.is_file()}
    stats = off.stats()["v"]
    assert len(listed) == stats["files"]
    assert not [p for p in view_dir.rglob(".*")]
    # the store replays the commit log above durable_seq: the result is whole again
    if durable < 3:
        n = 30
        off.append(
            "v",
            pa.table(
                {
                    "user_id": pa.array(range(n), pa.int64()),
                    "event_timestamp": pa.array([T0 + i * 3_600_000_000_000 for i in range(n)], TS),
                    "created_timestamp": pa.array([T0] * n, TS),
                    "x": pa.array([3.0] * n, pa.float64()),
                }
            ),
            3,
        )
    latest = off.latest_per_entity("v")
    assert latest.column("x").to_pylist() == [3.0] * 30
    assert off.scan("v", T0, T0 + DAY).read_all().num_rows == 24 * 3
    off.close()
