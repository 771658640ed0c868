"""Offline retention: expired partitions are dropped atomically (record, manifest, then files),
reads keep answering during a drop, outside-retention rows read null, and a writer SIGKILLed at
each step of a drop leaves a consistent store that lost nothing it should keep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from offline import FeatureQuery, OfflineStore
from offline.retention import RETENTION_NAME, expired_files, first_retained_day
from tests.offline.conftest import DAY, HOUR, T0, TS, options

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("event_timestamp", TS),
        ("created_timestamp", TS),
        ("x", pa.float64()),
    ]
)


def day_batch(day: int, n: int = 10, x: float = 1.0) -> pa.Table:
    """`n` entities with one row each at noon of day T0 + `day`."""
    t = T0 + day * DAY + 12 * HOUR
    return pa.table(
        {
            "user_id": pa.array(range(n), pa.int64()),
            "event_timestamp": pa.array([t] * n, TS),
            "created_timestamp": pa.array([t] * n, TS),
            "x": pa.array([x + day] * n, pa.float64()),
        },
        schema=SCHEMA,
    )


def ten_days(tmp_path: Path, **kw: object) -> OfflineStore:
    off = OfflineStore(tmp_path, options(snapshot_grace_s=0, **kw))
    off.register_view("v", SCHEMA, ["user_id"])
    for day in range(10):
        off.append("v", day_batch(day), day + 1)
        off.flush()
    return off


def parquet_days(tmp_path: Path) -> set[str]:
    return {p.parent.name for p in (tmp_path / "offline" / "v").rglob("part-*.parquet")}


def test_expired_files_are_partitions_entirely_before_the_cutoff() -> None:
    assert first_retained_day(T0 + 5 * DAY) == (T0 + 5 * DAY) // DAY
    assert first_retained_day(T0 + 5 * DAY - 1) == (T0 + 4 * DAY) // DAY
    assert first_retained_day(-1) == -1  # before 1970: floor division


def test_drop_expired_drops_whole_old_partitions_atomically(tmp_path: Path) -> None:
    off = ten_days(tmp_path)
    assert off.drop_expired(now_ns=T0 + 20 * DAY) == {}  # no retention set: keeps everything
    off.set_retention("v", 3 * DAY)
    now = T0 + 10 * DAY + 6 * HOUR  # cutoff T0 + 7d 6h: day 7 is partly retained
    report = off.drop_expired(now_ns=now)
    assert report == {"v": {"partitions": 7, "files": 7, "rows": 70, "bytes": report["v"]["bytes"]}}
    assert off.stats()["v"]["partitions"] == 3 and off.rows() == {"v": 30}
    assert len(parquet_days(tmp_path)) == 3  # grace 0, no reader: deleted at once
    assert off.drop_expired(now_ns=now) == {}  # idempotent
    floor = off.retained_floor_ns("v")
    assert floor is not None and floor >= T0 + 7 * DAY
    rows = off.scan("v").read_all()
    assert sorted(set(rows.column("x").to_pylist())) == [8.0, 9.0, 10.0]
    off.close()
    reopened = OfflineStore(tmp_path, options())
    assert reopened.stats()["v"]["partitions"] == 3
    assert reopened.retained_floor_ns("v") == (T0 + 7 * DAY)  # from the record, no retention set
    reopened.close()


def test_a_running_scan_keeps_its_files_during_a_drop(tmp_path: Path) -> None:
    off = ten_days(tmp_path)
    reader = off.scan("v")  # pins every file of its snapshot
    off.set_retention("v", 3 * DAY)
    off.drop_expired(now_ns=T0 + 10 * DAY)
    assert len(parquet_days(tmp_path)) == 10  # still read
    assert reader.read_all().num_rows == 100
    assert len(parquet_days(tmp_path)) == 3  # released: dropped files deleted
    off.close()


def test_reads_keep_answering_while_drops_run(tmp_path: Path) -> None:
    off = ten_days(tmp_path)
    ents = pa.table(
        {
            "user_id": pa.array([1, 2, 3], pa.int64()),
            "event_timestamp": pa.array([T0 + 9 * DAY + 13 * HOUR] * 3, TS),
        }
    )
    q = [FeatureQuery("v", ["x"], ["user_id"])]
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.is_set():
                assert off.get_historical(ents, q).column("x").to_pylist() == [10.0] * 3
        except BaseException as e:  # noqa: BLE001 - reported to the test thread
            errors.append(e)

    t = threading.Thread(target=loop)
    t.start()
    off.set_retention("v", 1 * DAY)
    for day in range(1, 9):
        off.drop_expired(now_ns=T0 + day * DAY + DAY)
    stop.set()
    t.join()
    assert not errors
    assert off.stats()["v"]["partitions"] == 2  # days 8 and 9: the cutoff is day 8's midnight
    off.close()


def test_null_before_nulls_and_count_before_counts_rows_outside(tmp_path: Path) -> None:
    off = ten_days(tmp_path)
    ts = [T0 + 2 * DAY + 13 * HOUR, T0 + 8 * DAY + 13 * HOUR]
    ents = pa.table({"user_id": pa.array([1, 1], pa.int64()), "event_timestamp": pa.array(ts, TS)})
    q = [FeatureQuery("v", ["x"], ["user_id"])]
    cutoff = T0 + 5 * DAY
    assert off.count_before(ents, {"v": cutoff}) == {"v": 1}
    got = off.get_historical(ents, q, null_before={"v": cutoff})
    assert got.column("x").to_pylist() == [None, 9.0]
    assert off.get_historical(ents, q).column("x").to_pylist() == [3.0, 9.0]
    path = tmp_path / "ents.parquet"
    import pyarrow.parquet as pq

    pq.write_table(ents, path)
    assert off.count_before(str(path), {"v": cutoff}) == {"v": 1}
    out = off.export(str(path), q, tmp_path / "out.parquet", null_before={"v": cutoff})
    assert pq.read_table(out.path).column("x").to_pylist() == [None, 9.0]
    off.close()


def test_expired_files_keep_manifest_order() -> None:
    from offline.manifest import FileEntry

    files = [FileEntry(f"date=x/part-{d}.parquet", d, 1, 1, d, d, ()) for d in (5, 1, 9, 3)]
    assert [f.day for f in expired_files(files, 4 * DAY)] == [1, 3]


CHILD = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {root!r})
    import pyarrow as pa
    from offline import OfflineStore, OfflineOptions
    from tests.offline.test_retention import SCHEMA, day_batch

    stage, path = sys.argv[1], sys.argv[2]
    off = OfflineStore(path, OfflineOptions(background=False, fsync=True, snapshot_grace_s=0))
    off.register_view("v", SCHEMA, ["user_id"])
    for day in range(10):
        off.append("v", day_batch(day), day + 1)
        off.flush()
    off.set_retention("v", 3 * 86_400 * 10**9)

    def pause():
        print("PAUSED", flush=True)
        time.sleep(600)

    real_replace, real_unlink = os.replace, os.unlink
    def replace(src, dst):
        name = os.path.basename(str(dst))
        if stage == "before-record" and name == {record!r}:
            pause()
        if stage == "before-manifest" and name == "manifest.json":
            pause()
        real_replace(src, dst)
        if stage == "after-manifest" and name == "manifest.json":
            pause()
    def unlink(p, *a, **kw):
        if stage == "mid-delete" and str(p).endswith(".parquet"):
            pause()
        real_unlink(p, *a, **kw)
    os.replace, os.unlink = replace, unlink
    print("READY", flush=True)
    off.drop_expired(now_ns={now})
    print("DONE", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage", ["before-record", "before-manifest", "after-manifest", "mid-delete"]
)
def test_sigkill_during_a_drop_leaves_a_consistent_store(tmp_path: Path, stage: str) -> None:
    now = T0 + 10 * DAY
    script = CHILD.format(root=str(ROOT), record=RETENTION_NAME, now=now)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, stage, str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() in ("PAUSED", "DONE"):
                break
        assert lines[-1] == "PAUSED", lines
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    off = OfflineStore(tmp_path, options(snapshot_grace_s=0))
    days = off.stats()["v"]["partitions"]
    rows = off.scan("v").read_all()
    kept = sorted(set(rows.column("x").to_pylist()))
    # all or nothing: either the drop had not happened, or every expired partition is gone
    assert (days, kept) in ((10, [float(d) for d in range(1, 11)]), (3, [8.0, 9.0, 10.0]))
    assert rows.num_rows == days * 10  # nothing retained was lost
    assert len(parquet_days(tmp_path)) == days  # no file the manifest does not name
    off.set_retention("v", 3 * DAY)
    off.drop_expired(now_ns=now)  # the next pass completes an interrupted drop
    assert off.stats()["v"]["partitions"] == 3 and len(parquet_days(tmp_path)) == 3
    off.close()
