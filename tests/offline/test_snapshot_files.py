"""Published snapshots (offline/snapshot_files.py) and the grace period of replaced files
(offline/retired.py): listings name exactly the manifest's files, complete up to their seq;
files a listing names survive compaction for the grace period, on reopen too, then go."""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from offline import OfflineStore, UnknownViewError, file_pins
from offline.retired import RETIRED_NAME
from offline.snapshot_files import VERSION_ORDER, listing_schema
from tests.offline.conftest import HOUR, T0, TS, options

SCHEMA = pa.schema(
    [("k", pa.int64()), ("event_timestamp", TS), ("created_timestamp", TS), ("x", pa.float64())]
)


def batch(seq: int, n: int = 6) -> pa.Table:
    return pa.table(
        {
            "k": pa.array([i % 4 for i in range(n)], pa.int64()),
            "event_timestamp": pa.array([T0 + (i * 7 + seq) * HOUR for i in range(n)], TS),
            "created_timestamp": pa.array([T0] * n, TS),
            "x": pa.array([float(seq * 100 + i) for i in range(n)]),
        }
    )


def open_store(path: Path, **kw: object) -> OfflineStore:
    off = OfflineStore(path, options(**kw))
    off.register_view("v", SCHEMA, ["k"])
    return off


def fill(off: OfflineStore, seqs: range) -> None:
    """One flushed file per seq and partition (events span two dates)."""
    for s in seqs:
        off.append("v", batch(s), s)
        off.flush()


def read_listing(listing: dict) -> pa.Table:
    """The snapshot's rows through pyarrow.dataset, filter applied, sorted by (_seq, _row)."""
    paths = [f["path"] for f in listing["files"]]
    dataset = ds.dataset(paths, format="parquet", schema=listing_schema(listing))
    table = dataset.to_table(filter=ds.field("_seq") <= listing["as_of_seq"])
    return table.sort_by([("_seq", "ascending"), ("_row", "ascending")])


def duckdb_scan(off: OfflineStore, as_of_seq: int) -> pa.Table:
    return (
        off.scan("v", as_of_seq=as_of_seq)
        .read_all()
        .sort_by([("_seq", "ascending"), ("_row", "ascending")])
    )


def parquet_on_disk(path: Path) -> set[str]:
    return {str(p) for p in (path / "offline" / "v").rglob("*.parquet")}


def test_listing_names_the_manifest_files_not_the_directory(tmp_path) -> None:
    off = open_store(tmp_path)
    fill(off, range(1, 4))
    stray = tmp_path / "offline" / "v" / "date=2023-11-14" / ".part-9-9.parquet.abc.tmp"
    stray.write_bytes(b"half a file")
    listing = off.snapshot_files("v")
    assert {f["path"] for f in listing["files"]} == parquet_on_disk(tmp_path)
    assert all(Path(f["path"]).is_absolute() for f in listing["files"])
    assert listing["as_of_seq"] == listing["complete_to_seq"] == 3
    assert listing["row_filter"] == "_seq <= 3" and not listing["filter_needed"]
    assert listing["version_order"] == list(VERSION_ORDER)
    assert [c["name"] for c in listing["schema"]] == [*SCHEMA.names, "_seq", "_row"]
    assert listing["schema"][1]["type"] == "timestamp[ns, tz=UTC]"
    assert listing["timestamps"]["columns"] == ["event_timestamp", "created_timestamp"]
    assert "nanosAsLong" in listing["timestamps"]["encoding"]
    json.dumps(listing)  # plain JSON values only
    assert read_listing(listing).equals(duckdb_scan(off, 3))
    off.close()


def test_listing_as_of_an_earlier_seq_filters_rows_of_later_seqs(tmp_path) -> None:
    off = open_store(tmp_path)
    fill(off, range(1, 5))
    off.compact()  # merged files hold seqs 1..4
    listing = off.snapshot_files("v", as_of_seq=2)
    assert listing["filter_needed"]
    assert all(f["min_seq"] <= 2 for f in listing["files"])
    got = read_listing(listing)
    assert set(got.column("_seq").to_pylist()) == {1, 2}
    assert got.equals(duckdb_scan(off, 2))
    off.close()


def test_listing_flushes_buffered_rows_up_to_its_seq(tmp_path) -> None:
    off = open_store(tmp_path)
    fill(off, range(1, 3))
    off.append("v", batch(3), 3)  # only in memory
    assert off.durable_seq("v") == 2
    listing = off.snapshot_files("v")
    assert off.durable_seq("v") == 3
    assert listing["as_of_seq"] == 3 and listing["complete_to_seq"] >= 3
    assert read_listing(listing).equals(duckdb_scan(off, 3))
    off.close()


def test_unknown_view_is_refused(tmp_path) -> None:
    off = open_store(tmp_path)
    with pytest.raises(UnknownViewError):
        off.snapshot_files("nope")
    off.close()


def test_replaced_files_outlive_compaction_for_the_grace_period(tmp_path) -> None:
    off = open_store(tmp_path, snapshot_grace_s=0.6)
    fill(off, range(1, 4))
    listing = off.snapshot_files("v")
    before = duckdb_scan(off, 3)
    off.compact()
    assert {f["path"] for f in listing["files"]} <= parquet_on_disk(tmp_path)
    assert read_listing(listing).equals(before)  # the old snapshot still reads whole
    retired = json.loads((tmp_path / "offline" / RETIRED_NAME).read_bytes())["files"]
    assert len(retired) == len(listing["files"])
    time.sleep(0.7)
    file_pins.reap(off)  # the background thread's step
    assert parquet_on_disk(tmp_path) == {f["path"] for f in off.snapshot_files("v")["files"]}
    assert json.loads((tmp_path / "offline" / RETIRED_NAME).read_bytes())["files"] == {}
    off.close()


def test_background_thread_deletes_replaced_files_after_the_grace_period(tmp_path) -> None:
    off = open_store(tmp_path, snapshot_grace_s=0.3, background=True, background_interval_s=0.05)
    fill(off, range(1, 4))
    old = {f["path"] for f in off.snapshot_files("v")["files"]}
    off.compact()
    assert old <= parquet_on_disk(tmp_path)
    deadline = time.monotonic() + 10
    while old & parquet_on_disk(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not old & parquet_on_disk(tmp_path)
    off.close()


def test_reopen_keeps_files_within_grace_and_deletes_those_past_it(tmp_path) -> None:
    off = open_store(tmp_path, snapshot_grace_s=3600)
    fill(off, range(1, 4))
    listing = off.snapshot_files("v")
    off.compact()
    off.close()
    off = open_store(tmp_path, snapshot_grace_s=3600)
    assert {f["path"] for f in listing["files"]} <= parquet_on_disk(tmp_path)
    assert read_listing(listing).equals(duckdb_scan(off, 3))
    off.close()
    off = open_store(tmp_path, snapshot_grace_s=0)  # now every recorded file is past grace
    assert parquet_on_disk(tmp_path) == {f["path"] for f in off.snapshot_files("v")["files"]}
    assert json.loads((tmp_path / "offline" / RETIRED_NAME).read_bytes())["files"] == {}
    off.close()


def test_a_record_made_before_a_crash_keeps_no_live_file_retired(tmp_path) -> None:
    """Retiring comes before the manifest write: a crash between them leaves a record of files
    the manifest still names; reopen drops it and those files stay live."""
    off = open_store(tmp_path, snapshot_grace_s=0)
    fill(off, range(1, 3))
    paths = [f.path for f in off._views["v"].files]
    file_pins.retire_files(off, "v", paths)  # ... and the process dies before its manifest write
    file_pins.reap(off)
    assert len(parquet_on_disk(tmp_path)) == len(paths)  # named files are never deleted
    off.close()
    off = open_store(tmp_path, snapshot_grace_s=0)
    assert json.loads((tmp_path / "offline" / RETIRED_NAME).read_bytes())["files"] == {}
    assert duckdb_scan(off, 2).num_rows == 12
    off.close()


def test_a_query_pinning_a_replaced_file_keeps_it_past_the_grace_period(tmp_path) -> None:
    off = open_store(tmp_path, snapshot_grace_s=0)
    fill(off, range(1, 3))
    old = parquet_on_disk(tmp_path)
    reader = off.scan("v")  # pins the files of its snapshot until read
    off.compact()
    assert old <= parquet_on_disk(tmp_path)
    assert reader.read_all().num_rows == 12
    deadline = time.monotonic() + 10
    while old & parquet_on_disk(tmp_path) and time.monotonic() < deadline:
        file_pins.reap(off)
        time.sleep(0.02)
    assert not old & parquet_on_disk(tmp_path)
    off.close()


def test_duckdb_reads_the_listed_files_like_the_store(tmp_path) -> None:
    off = open_store(tmp_path)
    fill(off, range(1, 4))
    listing = off.snapshot_files("v", as_of_seq=2)
    con = duckdb.connect()
    got = con.sql(
        "SELECT * FROM read_parquet($files, union_by_name = true, hive_partitioning = false) "
        "WHERE _seq <= $n ORDER BY _seq, _row",
        params={"files": [f["path"] for f in listing["files"]], "n": 2},
    ).to_arrow_table()
    assert got.num_rows == 12
    assert got.column("x").equals(duckdb_scan(off, 2).column("x"))
    off.close()
