"""Point-in-time join and export against a brute-force oracle on random multi-view data."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offline import FeatureQuery, OfflineStore, SchemaMismatchError, UnknownViewError
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

QUERY_SETS = [
    [
        FeatureQuery("users", ["age", "score", "city", "active"], ["user_id"]),
        FeatureQuery("items", ["price", "seen", "n"], ["item_id"], ttl_ns=6 * HOUR),
        FeatureQuery("pairs", ["clicks", "emb"], ["user_id", "item_id"], ttl_ns=DAY),
    ],
    [
        FeatureQuery("pairs", ["emb"], ["item_id", "user_id"], ttl_ns=HOUR),
        FeatureQuery("users", ["city"], ["user_id"], ttl_ns=1),
    ],
]


def _load(
    off: OfflineStore, rng: np.random.Generator, batches: int, flush_after: int, seq: int = 0
) -> dict:
    """Append random batches round-robin over the views; flush part of them to Parquet."""
    rows: dict[str, list[dict]] = {v: [] for v in VIEWS}
    for i in range(batches):
        view = list(VIEWS)[i % len(VIEWS)]
        seq += 1 + int(rng.integers(0, 3))  # seqs are global: gaps per view
        batch = random_batch(rng, view, int(rng.integers(1, 40)))
        off.append(view, batch, seq)
        rows[view] += as_rows(batch, seq)
        if i == flush_after:
            off.flush()
    return {"rows": rows, "seq": seq}


def _feature_times(rows: dict) -> list[int]:
    return sorted({r["event_timestamp"] for rs in rows.values() for r in rs})


def _check(off, data, ents, queries, as_of, full=False) -> None:
    got = off.get_historical(ents, queries, as_of_seq=as_of, full_feature_names=full)
    want = oracle(data["rows"], ents, queries, as_of, full)
    assert list(want) == got.column_names
    got_c = to_comparable(got)
    for name in want:
        assert got_c[name] == want[name], f"column {name} differs (as_of_seq={as_of})"
    # entity columns pass through with their types unchanged
    for name in ents.column_names:
        assert got.schema.field(name).type == ents.schema.field(name).type


PLANS = {
    "auto": {"join_plan": "auto"},
    "asof": {"join_plan": "asof"},
    "auto-too-many-entities": {"join_plan": "auto", "matcher_max_entities": 10},
}


@pytest.mark.parametrize(
    "seed, plan", [(1, "auto"), (2, "auto"), (3, "asof"), (4, "auto-too-many-entities")]
)
def test_join_matches_oracle_buffer_parquet_as_of_and_compaction(tmp_path, seed, plan) -> None:
    rng = np.random.default_rng(seed)
    off = OfflineStore(tmp_path / "root", options(**PLANS[plan]))
    for name, (keys, _) in VIEWS.items():
        off.register_view(name, schema_of(name), keys)
    data = _load(off, rng, batches=24, flush_after=int(rng.integers(5, 18)))
    off.flush("users")  # users: all in Parquet; others: part buffer, part Parquet
    assert off.stats()["users"]["buffer_rows"] == 0
    assert off.stats()["items"]["buffer_rows"] > 0
    ents = random_entities(rng, 150, _feature_times(data["rows"]))
    as_ofs = [None, data["seq"] // 2, 1, 0]
    for queries in QUERY_SETS:
        for as_of in as_ofs:
            _check(off, data, ents, queries, as_of)
    _check(off, data, ents, QUERY_SETS[0], None, full=True)
    # more batches, spread over several files per partition, then compaction
    more = _load(off, rng, batches=9, flush_after=3, seq=data["seq"])
    for view, rs in more["rows"].items():
        data["rows"][view] += rs
    off.close()
    off = OfflineStore(tmp_path / "root", options(**PLANS[plan]))
    before = {q[0].view: off.get_historical(ents, q) for q in QUERY_SETS}
    files_before = sum(s["files"] for s in off.stats().values())
    off.compact()
    assert sum(s["files"] for s in off.stats().values()) < files_before
    for queries in QUERY_SETS:
        assert off.get_historical(ents, queries).equals(before[queries[0].view])
        for as_of in as_ofs:
            _check(off, data, ents, queries, as_of)
    off.close()


@pytest.fixture
def loaded(tmp_path):
    rng = np.random.default_rng(7)
    off = OfflineStore(tmp_path / "root", options())
    for name, (keys, _) in VIEWS.items():
        off.register_view(name, schema_of(name), keys)
    data = _load(off, rng, batches=15, flush_after=8)
    ents = random_entities(rng, 120, _feature_times(data["rows"]))
    yield off, data, ents
    off.close()


@pytest.mark.parametrize("full", [False, True])
def test_export_writes_the_join_and_names_its_seq(loaded, tmp_path, full) -> None:
    off, data, ents = loaded
    queries = QUERY_SETS[0]
    want = to_comparable(off.get_historical(ents, queries, full_feature_names=full))
    pq.write_table(ents, tmp_path / "ents.parquet")
    for source in (ents, tmp_path / "ents.parquet", str(tmp_path / "ents.parquet")):
        out = tmp_path / "out dir" / "train'set.parquet"
        out.parent.mkdir(exist_ok=True)
        res = off.export(source, queries, out, full_feature_names=full)
        assert (res.rows, res.seq, res.path) == (ents.num_rows, data["seq"], str(out))
        assert to_comparable(pq.read_table(out)) == want
        assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp left behind
    mid = data["seq"] // 2
    res = off.export(ents, queries, tmp_path / "mid.parquet", as_of_seq=mid)
    assert res.seq == mid
    assert to_comparable(pq.read_table(tmp_path / "mid.parquet")) == to_comparable(
        off.get_historical(ents, queries, as_of_seq=mid)
    )


def test_entity_timestamps_of_any_unit_and_zone_mean_the_same_instant(loaded) -> None:
    off, data, ents = loaded
    queries = QUERY_SETS[0]
    base = to_comparable(off.get_historical(ents, queries))
    ts = ents.column("event_timestamp")
    for typ in (pa.timestamp("ns", tz="UTC"), pa.timestamp("ns", tz="Asia/Kolkata")):
        other = ents.set_column(2, "event_timestamp", ts.cast(typ))
        got = to_comparable(off.get_historical(other, queries))
        assert got == base
    # coarser units: compare against the oracle on the truncated times
    secs = ents.set_column(2, "event_timestamp", pc_floor_seconds(ts))
    got = to_comparable(off.get_historical(secs, queries))
    want = oracle(data["rows"], secs, queries, None)
    assert got == want


def pc_floor_seconds(ts: pa.ChunkedArray) -> pa.ChunkedArray:
    ns = ts.cast(pa.int64()).to_numpy()
    return pa.chunked_array([pa.array(ns // 10**9, pa.int64()).cast(pa.timestamp("s"))])


def test_empty_entity_table_gives_empty_result(loaded) -> None:
    off, _, ents = loaded
    got = off.get_historical(ents.slice(0, 0), QUERY_SETS[0])
    assert got.num_rows == 0
    assert got.column_names[: ents.num_columns] == ents.column_names


def test_bad_queries_and_entities_are_refused_with_the_name(loaded) -> None:
    off, _, ents = loaded
    q = FeatureQuery("users", ["age"], ["user_id"])
    with pytest.raises(UnknownViewError, match="nope"):
        off.get_historical(ents, [FeatureQuery("nope", ["age"], ["user_id"])])
    with pytest.raises(SchemaMismatchError, match="'height'"):
        off.get_historical(ents, [FeatureQuery("users", ["height"], ["user_id"])])
    with pytest.raises(SchemaMismatchError, match="user_id"):
        off.get_historical(ents.drop_columns(["user_id"]), [q])
    with pytest.raises(SchemaMismatchError, match="user_id"):
        off.get_historical(ents.set_column(1, "user_id", pa.array(["a"] * ents.num_rows)), [q])
    with pytest.raises(SchemaMismatchError, match="event_timestamp"):
        off.get_historical(ents.drop_columns(["event_timestamp"]), [q])
    nulls = ents.set_column(2, "event_timestamp", pa.nulls(ents.num_rows, pa.timestamp("ns")))
    with pytest.raises(SchemaMismatchError, match="row 0"):
        off.get_historical(nulls, [q])
    with pytest.raises(SchemaMismatchError, match="collides"):
        off.get_historical(ents, [q, FeatureQuery("users", ["age"], ["user_id"], ttl_ns=HOUR)])
    with pytest.raises(SchemaMismatchError, match="'age'.*collides"):
        off.get_historical(ents.rename_columns([*ents.column_names[:-1], "age"]), [q])
    with pytest.raises(SchemaMismatchError, match="keys"):
        off.get_historical(ents, [FeatureQuery("pairs", ["clicks"], ["user_id"])])
    assert off.get_historical(ents, [q], full_feature_names=True).column_names[-1] == "users__age"


def test_ttl_bounds_are_inclusive_and_a_stale_match_is_null_not_an_older_row(tmp_path) -> None:
    off = OfflineStore(tmp_path / "r", options())
    off.register_view("users", schema_of("users"), ["user_id"])
    rows = {"user_id": [1, 1], "event_timestamp": [T0, T0 + 10 * HOUR]}
    batch = pa.table(
        {
            "user_id": pa.array(rows["user_id"], pa.int64()),
            "event_timestamp": pa.array(rows["event_timestamp"], pa.timestamp("ns", tz="UTC")),
            "created_timestamp": pa.array([T0, T0], pa.timestamp("ns", tz="UTC")),
            "age": pa.array([1, 2], pa.int64()),
            "score": pa.array([None, None], pa.float64()),
            "city": pa.array([None, None], pa.string()),
            "active": pa.array([None, None], pa.bool_()),
        }
    )
    off.append("users", batch, 1)
    t = [T0 - 1, T0, T0 + HOUR, T0 + HOUR + 1, T0 + 10 * HOUR, T0 + 11 * HOUR, T0 + 11 * HOUR + 1]
    ents = pa.table({"user_id": [1] * len(t), "event_timestamp": pa.array(t, pa.timestamp("ns"))})
    got = off.get_historical(ents, [FeatureQuery("users", ["age"], ["user_id"], ttl_ns=HOUR)])
    assert got.column("age").to_pylist() == [None, 1, 1, None, 2, 2, None]
    off.close()
