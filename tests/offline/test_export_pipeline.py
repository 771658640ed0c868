"""The position-based export plan (offline/export_pipeline.py) against the brute-force oracle."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offline import FeatureQuery, OfflineStore, export_pipeline
from tests.offline.conftest import (
    DAY,
    HOUR,
    T0,
    VIEWS,
    as_rows,
    options,
    oracle,
    random_batch,
    random_entities,
    schema_of,
    to_comparable,
)

QUERIES = [
    [FeatureQuery("users", ["age", "score", "city", "active"], ["user_id"])],
    [FeatureQuery("users", ["city", "age"], ["user_id"], ttl_ns=6 * HOUR)],
    [FeatureQuery("users", ["score"], ["user_id"], ttl_ns=1)],
]


def _load(off: OfflineStore, rng: np.random.Generator, batches: int, seq: int = 0) -> dict:
    rows: list[dict] = []
    for i in range(batches):
        seq += 1 + int(rng.integers(0, 3))
        batch = random_batch(rng, "users", int(rng.integers(1, 60)))
        off.append("users", batch, seq)
        rows += as_rows(batch, seq)
        if i % 4 == 3:
            off.flush()  # several files per date partition, small row groups
    return {"rows": {"users": rows}, "seq": seq}


def _export(off: OfflineStore, ents, queries, path, as_of=None) -> dict[str, list]:
    res = off.export(ents, queries, path, as_of_seq=as_of)
    assert res.rows == ents.num_rows
    return to_comparable(pq.read_table(path))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_position_plan_export_matches_oracle(tmp_path, seed, monkeypatch) -> None:
    rng = np.random.default_rng(seed)
    used = []
    real = export_pipeline.export_by_positions
    monkeypatch.setattr(
        export_pipeline,
        "export_by_positions",
        lambda *a, **k: used.append(1) or real(*a, **k),
    )
    off = OfflineStore(tmp_path / "root", options(row_group_rows=7))
    off.register_view("users", schema_of("users"), VIEWS["users"][0])
    data = _load(off, rng, batches=26)  # the last batches stay in the buffer
    assert off.stats()["users"]["buffer_rows"] > 0
    times = sorted({r["event_timestamp"] for r in data["rows"]["users"]})
    ents = random_entities(rng, 300, times)
    ents = ents.set_column(
        1,
        "user_id",
        pa.array(
            [None if i % 17 == 0 else v for i, v in enumerate(ents.column("user_id").to_pylist())],
            pa.int64(),
        ),
    )
    for queries in QUERIES:
        for as_of in (None, data["seq"] // 2, 0):
            got = _export(off, ents, queries, tmp_path / "out.parquet", as_of)
            assert got == oracle(data["rows"], ents, queries, as_of), (queries, as_of)
    assert used, "the position plan did not run"
    off.compact()
    got = _export(off, ents, QUERIES[1], tmp_path / "c.parquet")
    assert got == oracle(data["rows"], ents, QUERIES[1], None)
    off.close()


def test_position_plan_equals_duckdb_plan_and_reads_files_without_new_features(tmp_path) -> None:
    rng = np.random.default_rng(5)
    off = OfflineStore(tmp_path / "root", options())
    off.register_view("users", schema_of("users"), ["user_id"])
    data = _load(off, rng, batches=8)
    off.flush()
    wider = schema_of("users").append(pa.field("extra", pa.float64()))
    off.register_view("users", wider, ["user_id"])  # older files lack `extra`
    batch = random_batch(rng, "users", 30)
    batch = batch.append_column("extra", pa.array(rng.random(30)))
    off.append("users", batch, data["seq"] + 1)
    off.flush()
    times = [T0 + i * HOUR for i in range(0, 9 * 24, 5)]
    ents = random_entities(rng, 200, times)
    queries = [FeatureQuery("users", ["extra", "age", "city"], ["user_id"], ttl_ns=2 * DAY)]
    ours = _export(off, ents, queries, tmp_path / "a.parquet")
    off.close()
    asof = OfflineStore(tmp_path / "root", options(join_plan="asof"))
    theirs = _export(asof, ents, queries, tmp_path / "b.parquet")
    asof.close()
    assert ours == theirs
    assert any(v is not None for v in ours["extra"]) and any(v is None for v in ours["extra"])


def test_empty_entities_and_empty_view(tmp_path) -> None:
    off = OfflineStore(tmp_path / "root", options())
    off.register_view("users", schema_of("users"), ["user_id"])
    ents = random_entities(np.random.default_rng(1), 5, [T0]).slice(0, 0)
    q = [FeatureQuery("users", ["age"], ["user_id"])]
    assert _export(off, ents, q, tmp_path / "e.parquet")["age"] == []
    ents = random_entities(np.random.default_rng(1), 5, [T0])
    assert _export(off, ents, q, tmp_path / "f.parquet")["age"] == [None] * 5
    off.close()


WIDE = (
    ["user_id"],
    [
        ("user_id", pa.int64()),
        ("event_timestamp", pa.timestamp("ns", tz="UTC")),
        ("created_timestamp", pa.timestamp("ns", tz="UTC")),
        ("i32", pa.int32()),
        ("f32", pa.float32()),
        ("when", pa.timestamp("ns", tz="UTC")),
        ("vec", pa.list_(pa.float32(), 3)),
        ("text", pa.string()),
        ("flag", pa.bool_()),
    ],
)


@pytest.mark.parametrize("seed", [11, 12])
def test_position_plan_gathers_every_type_in_entity_order(tmp_path, seed, monkeypatch) -> None:
    """Fixed-width columns scattered, text gathered as dictionaries, lists taken, over many
    files, row groups and the buffer, with nulls, ties, ttl and a feature older files lack."""
    monkeypatch.setitem(VIEWS, "wide", WIDE)
    used = []
    real = export_pipeline.export_by_positions
    monkeypatch.setattr(
        export_pipeline, "export_by_positions", lambda *a, **k: used.append(1) or real(*a, **k)
    )
    late = WIDE[1] + [("late_text", pa.string()), ("late_i32", pa.int32())]
    rng = np.random.default_rng(seed)
    off = OfflineStore(tmp_path / "root", options(row_group_rows=5))
    off.register_view("wide", schema_of("wide"), ["user_id"])
    rows: list[dict] = []
    seq = 0
    for i in range(18):
        if i == 9:
            off.flush()
            monkeypatch.setitem(VIEWS, "wide", (WIDE[0], late))
            off.register_view("wide", schema_of("wide"), ["user_id"])
        seq += 1
        batch = random_batch(rng, "wide", int(rng.integers(1, 40)))
        off.append("wide", batch, seq)
        rows += as_rows(batch, seq)
        if i % 3 == 2 and i < 15:
            off.flush()
    assert off.stats()["wide"]["buffer_rows"] > 0
    times = sorted({r["event_timestamp"] for r in rows})
    ents = random_entities(rng, 250, times)
    features = ["i32", "f32", "when", "vec", "text", "flag", "late_text", "late_i32"]
    for r in rows:
        r.setdefault("late_text", None)
        r.setdefault("late_i32", None)
    for queries in (
        [FeatureQuery("wide", features, ["user_id"])],
        [FeatureQuery("wide", features[::-1], ["user_id"], ttl_ns=5 * HOUR)],
    ):
        for as_of in (None, seq // 2):
            got = _export(off, ents, queries, tmp_path / "w.parquet", as_of)
            assert got == oracle({"wide": rows}, ents, queries, as_of), (queries, as_of)
    out = pq.read_table(tmp_path / "w.parquet")
    assert out.schema.field("vec").type == pa.list_(pa.float32(), 3)
    assert out.schema.field("text").type == pa.string()
    assert used, "the position plan did not run"
    off.close()
