"""OfflineStore: scans and partition pruning, reopen, schema evolution, appends, compaction."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offline import (
    FeatureQuery,
    OfflineCorruptionError,
    OfflineError,
    OfflineStore,
    SchemaMismatchError,
    UnknownViewError,
)
from tests.offline.conftest import DAY, HOUR, T0, TS, options

SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("event_timestamp", TS),
        ("created_timestamp", TS),
        ("x", pa.float64()),
        ("tag", pa.string()),
    ]
)


def batch(keys, times, xs, tags=None) -> pa.Table:
    n = len(keys)
    return pa.table(
        {
            "user_id": pa.array(keys, pa.int64()),
            "event_timestamp": pa.array(times, TS),
            "created_timestamp": pa.array([T0] * n, TS),
            "x": pa.array(xs, pa.float64()),
            "tag": pa.array(tags or [f"t{i}" for i in range(n)], pa.string()),
        }
    )


def open_store(path, **kw) -> OfflineStore:
    off = OfflineStore(path, options(**kw))
    off.register_view("v", SCHEMA, ["user_id"])
    return off


def ten_days(off: OfflineStore) -> None:
    """Day d holds keys 0..4 at T0 + d days + 1 hour; one flush per day (one file each)."""
    for d in range(10):
        off.append("v", batch(list(range(5)), [T0 + d * DAY + HOUR] * 5, [float(d)] * 5), d + 1)
        off.flush()


def test_scan_reads_only_the_partitions_of_its_range(tmp_path) -> None:
    off = open_store(tmp_path)
    ten_days(off)
    view_dir = tmp_path / "offline" / "v"
    parts = sorted(p.name for p in view_dir.iterdir())
    assert len(parts) == 10 and parts[0].startswith("date=20")
    got = off.scan("v", T0 + 3 * DAY, T0 + 4 * DAY).read_all()
    assert got.column("x").to_pylist() == [3.0] * 5
    assert off._reads.scan_files("v", T0 + 3 * DAY, T0 + 4 * DAY) == [
        str(f) for f in (view_dir / parts[3]).iterdir()
    ]
    # proof by sabotage: every other partition's file becomes garbage
    for part in parts[:3] + parts[4:]:
        for f in (view_dir / part).iterdir():
            f.write_bytes(b"not parquet")
    assert off.scan("v", T0 + 3 * DAY, T0 + 4 * DAY).read_all().num_rows == 5
    ents = pa.table(
        {"user_id": [1, 2], "event_timestamp": pa.array([T0 + 3 * DAY + 2 * HOUR] * 2, TS)}
    )
    q = FeatureQuery("v", ["x"], ["user_id"], ttl_ns=HOUR)
    assert off.get_historical(ents, [q]).column("x").to_pylist() == [3.0, 3.0]
    assert len(off._reads.join_files(ents, [q])) == 1
    with pytest.raises(OfflineCorruptionError):
        off.scan("v").read_all()
    with pytest.raises(OfflineCorruptionError):
        off.get_historical(ents, [FeatureQuery("v", ["x"], ["user_id"])])  # no ttl: all days
    off.close()


def test_scan_filters_range_columns_and_as_of_seq_over_buffer_and_files(tmp_path) -> None:
    off = open_store(tmp_path)
    ten_days(off)
    off.append("v", batch([7], [T0 + 2 * DAY], [70.0]), 20)  # buffer only
    got = off.scan("v", T0 + 2 * DAY, T0 + 2 * DAY + HOUR + 1, columns=["user_id", "x", "_seq"])
    table = got.read_all()
    assert table.schema.names == ["user_id", "x", "_seq"]
    assert sorted(table.to_pylist(), key=lambda r: r["user_id"]) == sorted(
        [{"user_id": k, "x": 2.0, "_seq": 3} for k in range(5)]
        + [{"user_id": 7, "x": 70.0, "_seq": 20}],
        key=lambda r: r["user_id"],
    )
    assert off.scan("v", as_of_seq=4).read_all().num_rows == 20
    full = off.scan("v").read_all()
    assert full.num_rows == 51
    assert full.schema.field("event_timestamp").type == TS
    assert off.scan("v", T0 + 2 * DAY, T0 + 2 * DAY).read_all().num_rows == 0  # end exclusive
    with pytest.raises(SchemaMismatchError, match="nope"):
        off.scan("v", columns=["nope"])
    with pytest.raises(UnknownViewError):
        off.scan("w")
    off.close()


def test_reopen_sees_flushed_files_and_reports_durable_seq(tmp_path) -> None:
    off = open_store(tmp_path)
    ten_days(off)
    off.append("v", batch([1], [T0], [99.0]), 30)
    assert off.durable_seq("v") == 10 and off.max_seq() == 30
    before = off.latest_per_entity("v")
    off.close()  # flushes the buffer
    off = OfflineStore(tmp_path, options())
    assert off.durable_seq("v") == 30 and off.max_seq() == 30
    assert off.latest_per_entity("v").equals(before)
    assert off.stats()["v"]["partitions"] == 10
    # a replayed batch at or below durable_seq is ignored, an out-of-order one refused
    off.append("v", batch([1], [T0], [1.0]), 30)
    assert off.scan("v").read_all().num_rows == 51
    off.append("v", batch([1], [T0], [1.0]), 31)
    with pytest.raises(OfflineError, match="seq 31"):
        off.append("v", batch([1], [T0], [1.0]), 31)
    off.close()


def test_latest_per_entity_uses_the_full_version_order(tmp_path) -> None:
    off = open_store(tmp_path)
    # same event time: created decides; then seq; then position in the batch
    off.append("v", batch([1, 2, 3], [T0, T0, T0], [1.0, 1.0, 1.0]), 1)
    off.flush()
    b = batch([1, 2, 2, 3], [T0, T0, T0, T0 - 1], [2.0, 3.0, 4.0, 9.0])
    b = b.set_column(2, "created_timestamp", pa.array([T0 - 1, T0, T0, T0], TS))
    off.append("v", b, 2)
    got = off.latest_per_entity("v")
    assert got.column_names == [
        "user_id",
        "event_timestamp",
        "created_timestamp",
        "_seq",
        "x",
        "tag",
    ]
    assert got.column("x").to_pylist() == [1.0, 4.0, 1.0]
    assert got.column("_seq").to_pylist() == [1, 2, 1]
    assert off.latest_per_entity("v", as_of_seq=1).column("x").to_pylist() == [1.0, 1.0, 1.0]
    off.close()


def test_adding_features_is_allowed_and_old_rows_read_null(tmp_path) -> None:
    off = open_store(tmp_path)
    off.append("v", batch([1], [T0], [1.0]), 1)
    off.flush()
    off.append("v", batch([2], [T0], [2.0]), 2)  # stays in the buffer
    wider = SCHEMA.append(pa.field("y", pa.int32()))
    off.register_view("v", wider, ["user_id"])
    off.register_view("v", wider, ["user_id"])  # idempotent
    off.append("v", batch([3], [T0], [3.0]).append_column("y", pa.array([7], pa.int32())), 3)
    ents = pa.table({"user_id": [1, 2, 3], "event_timestamp": pa.array([T0] * 3, TS)})
    got = off.get_historical(ents, [FeatureQuery("v", ["x", "y"], ["user_id"])])
    assert got.column("y").to_pylist() == [None, None, 7]
    assert got.column("x").to_pylist() == [1.0, 2.0, 3.0]
    off.close()
    off = OfflineStore(tmp_path, options())
    assert off.get_historical(ents, [FeatureQuery("v", ["y"], ["user_id"])]).equals(
        got.drop_columns(["x"])
    )
    for bad, match in [
        (SCHEMA, "'y' was removed"),
        (wider.set(3, pa.field("x", pa.float32())), "'x' changes type"),
    ]:
        with pytest.raises(SchemaMismatchError, match=match):
            off.register_view("v", bad, ["user_id"])
    with pytest.raises(SchemaMismatchError, match="keys"):
        off.register_view("v", wider, ["tag"])
    off.close()


def test_bad_batches_are_refused_naming_the_column(tmp_path) -> None:
    off = open_store(tmp_path)
    good = batch([1, 2], [T0, T0], [1.0, 2.0])
    with pytest.raises(SchemaMismatchError, match="'user_id' is null at row 1"):
        off.append("v", good.set_column(0, "user_id", pa.array([1, None], pa.int64())), 1)
    with pytest.raises(SchemaMismatchError, match="lacks column 'event_timestamp'"):
        off.append("v", good.drop_columns(["event_timestamp"]), 1)
    with pytest.raises(SchemaMismatchError, match="unknown columns"):
        off.append("v", good.append_column("zz", pa.array([1, 2])), 1)
    with pytest.raises(SchemaMismatchError, match="'x'"):
        off.append("v", good.set_column(3, "x", pa.array(["a", "b"])), 1)
    with pytest.raises(UnknownViewError, match="'w'"):
        off.append("w", good, 1)
    assert off.scan("v").read_all().num_rows == 0
    # convertible types are accepted: int32 keys, int64 ns timestamps, large strings
    ok = good.set_column(0, "user_id", pa.array([1, 2], pa.int32()))
    ok = ok.set_column(1, "event_timestamp", pa.array([T0, T0], pa.int64()))
    ok = ok.set_column(4, "tag", pa.array(["a", "b"], pa.large_string()))
    off.append("v", ok.combine_chunks().to_batches()[0], 1)
    assert off.scan("v").read_all().column("tag").to_pylist() == ["a", "b"]
    off.close()


def test_buffer_flushes_by_size_and_by_age(tmp_path) -> None:
    off = open_store(tmp_path, buffer_rows=3)
    off.append("v", batch([1, 2], [T0, T0], [1.0, 2.0]), 1)
    assert off.stats()["v"]["files"] == 0
    off.append("v", batch([3], [T0], [3.0]), 2)
    assert off.stats()["v"] == {
        "files": 1,
        "bytes": off.stats()["v"]["bytes"],
        "buffer_rows": 0,
        "durable_seq": 2,
        "partitions": 1,
    }
    off.close()
    off = open_store(tmp_path / "aged", buffer_age_s=0.0)
    off.append("v", batch([1], [T0], [1.0]), 1)
    assert off.durable_seq("v") == 1
    off.close()


def test_background_thread_flushes_and_compacts(tmp_path) -> None:
    off = open_store(
        tmp_path, background=True, background_interval_s=0.01, compact_min_files=3, buffer_rows=2
    )
    for s in range(1, 7):
        off.append("v", batch([s, s + 100], [T0, T0 + 1], [1.0, 2.0]), s)
    deadline = 600
    while deadline and (off.durable_seq("v") < 6 or off.stats()["v"]["files"] > 2):
        threading.Event().wait(0.05)
        deadline -= 1
    assert off.durable_seq("v") == 6
    assert off.stats()["v"]["files"] <= 2
    assert off.scan("v").read_all().num_rows == 12
    off.close()


def test_compaction_beside_running_queries_keeps_results_and_files(tmp_path) -> None:
    off = open_store(tmp_path, snapshot_grace_s=0)  # replaced files go once unpinned
    rng = np.random.default_rng(5)
    seq = 0
    for _ in range(12):
        seq += 1
        keys = [int(k) for k in rng.integers(0, 50, 40)]
        times = [int(T0 + t * HOUR) for t in rng.integers(0, 48, 40)]
        off.append("v", batch(keys, times, [float(seq)] * 40), seq)
        off.flush()
    ents = pa.table(
        {
            "user_id": pa.array(rng.integers(0, 60, 500), pa.int64()),
            "event_timestamp": pa.array(T0 + rng.integers(0, 60, 500) * HOUR, TS),
        }
    )
    q = [FeatureQuery("v", ["x", "tag"], ["user_id"], ttl_ns=6 * HOUR)]
    want = off.get_historical(ents, q)
    reader = off.scan("v")  # holds its snapshot's files until read
    errors: list[BaseException] = []
    stop = threading.Event()

    def query_loop() -> None:
        try:
            while not stop.is_set():
                assert off.get_historical(ents, q).equals(want)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=query_loop) for _ in range(2)]
    for t in threads:
        t.start()
    before = off.stats()["v"]["files"]
    off.compact()
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert off.stats()["v"]["files"] == 2 < before
    old_files = list((tmp_path / "offline" / "v").rglob("part-*.parquet"))
    assert len(old_files) > 2  # the open reader still pins the replaced files
    assert reader.read_all().num_rows == 12 * 40
    live = list((tmp_path / "offline" / "v").rglob("part-*.parquet"))
    assert len(live) == 2  # released: replaced files deleted
    assert off.get_historical(ents, q).equals(want)
    off.close()
    off = OfflineStore(tmp_path, options())
    assert off.get_historical(ents, q).equals(want)
    off.close()


def test_manifest_problems_are_corruption_naming_the_file(tmp_path) -> None:
    off = open_store(tmp_path)
    ten_days(off)
    off.close()
    victim = next((tmp_path / "offline" / "v").rglob("part-*.parquet"))
    victim.unlink()
    with pytest.raises(OfflineCorruptionError, match=str(victim.name)):
        OfflineStore(tmp_path, options())
    (tmp_path / "offline" / "manifest.json").write_text("{not json")
    with pytest.raises(OfflineCorruptionError, match="manifest"):
        OfflineStore(tmp_path, options())


def test_parquet_files_are_hive_partitioned_and_readable_as_they_are(tmp_path) -> None:
    off = open_store(tmp_path)
    ten_days(off)
    off.close()
    table = pq.read_table(tmp_path / "offline" / "v", partitioning="hive")
    assert table.num_rows == 50
    assert "date" in table.column_names
    meta = pq.ParquetFile(next((tmp_path / "offline" / "v").rglob("*.parquet"))).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
