"""FeatureStore end to end on real engines: read-your-writes, version order, ttl, names, inputs."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from store.errors import (
    ClosedError,
    EntityKeyError,
    UnknownFeatureError,
    UnknownFeatureServiceError,
    UnknownPushSourceError,
    UnknownViewError,
    ValidationError,
)
from tests.store.conftest import DEFS, HOUR, ns, open_store, user_batch

FEATS = ["user_stats:ctr", "user_stats:country", "user_stats:emb"]


def test_read_your_writes_online_and_offline(fs, now) -> None:
    seq = fs.ingest("user_stats", user_batch([1, 2], now))
    assert seq == 1 and fs.last_seq == 1
    r = fs.get_online_features(FEATS, {"user_id": [2, 1, 3]})
    d = r.to_dict()
    assert d["user_id"] == [2, 1, 3]
    assert d["ctr"][:2] == pytest.approx([0.2, 0.1])
    assert d["ctr"][2] is None and d["country"] == ["c2", "c1", None]
    assert d["emb"] == [[2.0] * 4, [1.0] * 4, None]
    assert r.statuses["ctr"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
    assert [t.value for t in r.event_timestamps["ctr"]] == [now, now, 0]
    ent = pd.DataFrame(
        {"user_id": [1, 2], "event_timestamp": [pd.Timestamp(now, tz="UTC")] * 2, "label": [1, 0]}
    )
    hist = fs.get_historical_features(ent, FEATS)
    assert hist.column("ctr").to_pylist() == pytest.approx([0.1, 0.2])
    assert hist.column("label").to_pylist() == [1, 0]
    assert hist.schema.metadata[b"rickhouse.seq"] == b"1"
    assert fs.audit()["user_stats"]["mismatches"] == 0


def test_numbers_in_timestamp_columns_are_epoch_seconds_everywhere(fs) -> None:
    """Feast's convention (UnixTimestamp): ingest and entity_df read a number as epoch seconds."""
    t = 1_738_238_400  # 2025-01-30T12:00:00Z
    fs.ingest(
        "pair",
        {"user_id": [1], "item_id": ["a"], "event_timestamp": [t], "score": [1.0], "clicks": [3]},
    )
    fs.ingest(
        "pair",
        {
            "user_id": [1],
            "item_id": ["a"],
            "event_timestamp": [t + 60.5],
            "score": [2.0],
            "clicks": [4],
        },
    )
    r = fs.get_online_features(["pair:score"], {"user_id": [1], "item_id": ["a"]})
    assert r.event_timestamps["score"][0] == pd.Timestamp("2025-01-30T12:01:00.5Z")
    ent = {"user_id": [1, 1, 1], "item_id": ["a"] * 3, "event_timestamp": [t - 1, t + 59, t + 61]}
    hist = fs.get_historical_features(ent, ["pair:score"])
    assert hist.column("score").to_pylist() == [None, 1.0, 2.0]
    path = fs.root / "entities_epoch.parquet"  # an entity *file* reads numbers the same way
    pq.write_table(pa.table(ent), path)
    assert pa.types.is_integer(pq.read_schema(path).field("event_timestamp").type)
    assert fs.get_historical_features(str(path), ["pair:score"]).column("score").to_pylist() == [
        None,
        1.0,
        2.0,
    ]
    with pytest.raises(EntityKeyError, match="epoch-seconds"):
        fs.get_historical_features({**ent, "event_timestamp": [10**18] * 3}, ["pair:score"])
    with pytest.raises(ValidationError, match="Unix epoch seconds"):  # ns given as a number
        fs.ingest(
            "pair",
            {
                "user_id": [1],
                "item_id": ["a"],
                "event_timestamp": [t * 10**9],
                "score": [3.0],
                "clicks": [5],
            },
        )


def test_latest_by_event_then_created_then_seq_and_later_row_in_batch(fs, now) -> None:
    t1, t2 = now - 10 * 60 * 10**9, now - 5 * 60 * 10**9
    fs.ingest("user_stats", user_batch([1, 2, 3], t2, ctr=[0.2, 0.2, 0.2], created=t2))
    # a late, older event never overwrites a newer one
    fs.ingest("user_stats", user_batch([1], t1, ctr=[0.1], created=now))
    # same event time, larger created wins; same event and created: the later seq wins
    fs.ingest("user_stats", user_batch([2], t2, ctr=[0.3], created=t2 + 1))
    fs.ingest("user_stats", user_batch([3], t2, ctr=[0.4], created=t2))
    # within one batch, the later row wins a tie
    fs.ingest("user_stats", user_batch([4, 4, 4], t2, ctr=[0.5, 0.6, 0.7], created=t2))
    got = fs.get_online_features(["user_stats:ctr"], {"user_id": [1, 2, 3, 4]}).to_dict()["ctr"]
    assert got == pytest.approx([0.2, 0.3, 0.4, 0.7])
    report = fs.audit()["user_stats"]
    assert report == {"entities": 4, "online_entities": 4, "mismatches": 0, "examples": []}
    fs.flush()
    fs.compact()
    assert fs.audit()["user_stats"]["mismatches"] == 0


def test_ttl_and_null_statuses(fs, now) -> None:
    fs.ingest(
        "user_stats", user_batch([1, 2, 3], [now - 3 * HOUR, now - HOUR, now], ctr=[0.1, None, 0.3])
    )
    r = fs.get_online_features(["user_stats:ctr", "user_stats:country"], {"user_id": [1, 2, 3, 4]})
    assert r.statuses["ctr"] == ["OUTSIDE_MAX_AGE", "NULL_VALUE", "PRESENT", "NOT_FOUND"]
    assert r.statuses["country"] == ["OUTSIDE_MAX_AGE", "PRESENT", "PRESENT", "NOT_FOUND"]
    d = r.to_dict()
    assert d["ctr"][:2] == [None, None] and d["country"] == [None, "c2", "c3", None]
    # item_stats has no ttl: an old row is PRESENT
    fs.ingest(
        "item_stats", {"item_id": ["a"], "event_timestamp": [0], "price": [1.0], "ctr": [0.5]}
    )
    assert fs.get_online_features(["item_stats:price"], {"item_id": ["a"]}).statuses["price"] == [
        "PRESENT"
    ]


def test_feature_services_names_and_clashes(fs, now) -> None:
    fs.ingest("user_stats", user_batch([1], now))
    fs.ingest(
        "item_stats", {"item_id": ["a"], "event_timestamp": ns([now]), "price": [9.5], "ctr": [0.9]}
    )
    svc = fs.get_online_features("ranking_v1", {"user_id": [1]})
    assert list(svc.to_dict()) == ["user_id", "ctr", "emb"]
    with pytest.raises(
        ValidationError, match="'ctr' is in both views 'user_stats' and 'item_stats'"
    ):
        fs.get_online_features(
            ["user_stats:ctr", "item_stats:ctr"], {"user_id": [1], "item_id": ["a"]}
        )
    both = fs.get_online_features(
        ["user_stats:ctr", "item_stats:ctr"],
        {"user_id": [1], "item_id": ["a"]},
        full_feature_names=True,
    ).to_dict()
    assert both["user_stats__ctr"] == pytest.approx([0.1]) and both["item_stats__ctr"] == [0.9]
    with pytest.raises(UnknownFeatureServiceError):
        fs.get_online_features("nope", {"user_id": [1]})
    with pytest.raises(UnknownViewError, match="'nope'"):
        fs.get_online_features(["nope:x"], {"user_id": [1]})
    with pytest.raises(UnknownFeatureError, match="no feature 'x'"):
        fs.get_online_features(["user_stats:x"], {"user_id": [1]})


def test_entity_input_forms_and_errors(fs, now) -> None:
    fs.ingest(
        "pair",
        {
            "user_id": [1, 2],
            "item_id": ["a", "b"],
            "event_timestamp": ns([now] * 2),
            "score": [0.5, 0.7],
            "clicks": [3, None],
        },
    )
    cols = fs.get_online_features(
        ["pair:score", "pair:clicks"], {"user_id": ["1", 2], "item_id": ["a", "b"]}
    )
    rows = fs.get_online_features(
        ["pair:score", "pair:clicks"],
        [{"user_id": 1, "item_id": "a"}, {"user_id": 2, "item_id": "b"}],
    )
    assert (
        cols.to_dict()
        == rows.to_dict()
        == {"user_id": [1, 2], "item_id": ["a", "b"], "score": [0.5, 0.7], "clicks": [3, None]}
    )
    assert rows.statuses["clicks"] == ["PRESENT", "NULL_VALUE"]
    with pytest.raises(EntityKeyError, match="lack join key 'item_id'"):
        fs.get_online_features(["pair:score"], {"user_id": [1]})
    with pytest.raises(EntityKeyError, match="unequal lengths"):
        fs.get_online_features(["pair:score"], {"user_id": [1, 2], "item_id": ["a"]})
    with pytest.raises(EntityKeyError, match="row 1: 'x' is not an int64"):
        fs.get_online_features(["pair:score"], {"user_id": [1, "x"], "item_id": ["a", "b"]})
    with pytest.raises(EntityKeyError, match="row 0: 5 is not a string"):
        fs.get_online_features(["pair:score"], {"user_id": [1], "item_id": [5]})


def test_feast_json_shape(fs, now) -> None:
    ts = 1_738_238_403_000_000_000  # 2025-01-30T12:00:03Z
    fs.ingest(
        "item_stats",
        {
            "item_id": ["a", "b"],
            "event_timestamp": ns([ts, ts]),
            "price": [float("nan"), float("inf")],
            "ctr": [0.25, None],
        },
    )
    from app.feast_json import feast_json  # the server's wire form of an OnlineResponse

    body = feast_json(
        fs.get_online_features(
            ["item_stats:price", "item_stats:ctr"], {"item_id": ["a", "b", "zz"]}
        )
    )
    assert body["metadata"] == {"feature_names": ["item_id", "price", "ctr"]}
    key, price, ctr = body["results"]
    assert key == {
        "values": ["a", "b", "zz"],
        "statuses": ["PRESENT"] * 3,
        "event_timestamps": ["1970-01-01T00:00:00Z"] * 3,
    }
    assert price["values"] == ["NaN", "Infinity", None]
    assert ctr == {
        "values": [0.25, None, None],
        "statuses": ["PRESENT", "NULL_VALUE", "NOT_FOUND"],
        "event_timestamps": [
            "2025-01-30T12:00:03Z",
            "2025-01-30T12:00:03Z",
            "1970-01-01T00:00:00Z",
        ],
    }
    import json

    json.dumps(body, allow_nan=False)  # JSON-ready: no NaN, no numpy types
    arrow = fs.get_online_features(["item_stats:ctr"], {"item_id": ["a", "zz"]}).to_arrow()
    assert arrow.column_names == ["item_id", "ctr"] and arrow.column("ctr").to_pylist() == [
        0.25,
        None,
    ]


def test_push_definitions_and_stats(fs, now) -> None:
    assert fs.push("user_stats_push", user_batch([7], now)) == 1
    with pytest.raises(UnknownPushSourceError):
        fs.push("nope", user_batch([7], now))
    assert fs.feature_view("user_stats")["ttl"] == "2h"
    with pytest.raises(UnknownViewError):
        fs.feature_view("nope")
    assert [v["name"] for v in fs.definitions()["feature_views"]] == [
        "user_stats",
        "item_stats",
        "pair",
    ]
    fs.get_online_features(["user_stats:ctr"], {"user_id": [7, 8]})
    s = fs.stats()
    assert s["last_seq"] == 1
    assert set(s["commit_log"]) >= {"segments", "bytes"}
    assert set(s["online"]) == {"user_stats", "item_stats", "pair"}
    assert s["counters"] == {
        "ingested_rows": 1,
        "ingest_batches": 1,
        "online_lookups": 2,
        "exports": 0,
    }
    assert fs.root.is_dir()


def test_as_of_seq_reproduces_an_export_exactly(fs, now, tmp_path) -> None:
    fs.ingest("user_stats", user_batch(range(1, 51), now - HOUR))
    ent = pa.table(
        {
            "user_id": pa.array(range(1, 61), pa.int64()),
            "event_timestamp": pa.array([now] * 60, pa.timestamp("ns", "UTC")),
        }
    )
    first = fs.export_training(ent, FEATS, tmp_path / "a.parquet")
    assert first["seq"] == 1 and first["rows"] == 60
    fs.ingest("user_stats", user_batch(range(1, 61), now - 1000, ctr=[9.0] * 60))
    fs.flush()
    again = fs.export_training(ent, FEATS, tmp_path / "b.parquet", as_of_seq=first["seq"])
    # read with DuckDB: pyarrow 26 misreads DuckDB's Parquet of FLOAT[N] columns holding NULLs
    import duckdb

    def rows(path: str) -> list:
        return duckdb.sql(f"SELECT * FROM read_parquet('{path}')").arrow().read_all().to_pylist()

    a, b = rows(first["path"]), rows(again["path"])
    assert again["seq"] == 1 and a == b and len(a) == 60
    latest = fs.export_training(ent, FEATS, tmp_path / "c.parquet")
    assert latest["seq"] == 2 and rows(latest["path"]) != a
    assert fs.stats()["counters"]["exports"] == 3
    with pytest.raises(ValidationError, match="as_of_seq"):
        fs.export_training(ent, FEATS, tmp_path / "d.parquet", as_of_seq=99)


def test_concurrent_ingests_and_reads_from_threads(tmp_path, now) -> None:
    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    errors: list[BaseException] = []
    seqs: list[int] = []

    def writer(w: int) -> None:
        try:
            for i in range(15):
                ids = [w * 1000 + i, w * 1000 + 500 + i]
                seqs.append(fs.ingest("user_stats", user_batch(ids, now)))
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    def reader() -> None:
        try:
            for _ in range(60):
                r = fs.get_online_features(FEATS, {"user_id": list(range(5))})
                assert len(r.to_dict()["ctr"]) == 5
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def maintainer() -> None:
        try:
            for _ in range(3):
                fs.flush()
                fs.compact()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)] + [
        threading.Thread(target=reader),
        threading.Thread(target=maintainer),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(seqs) == list(range(1, 61))
    ids = [w * 1000 + o + i for w in range(4) for o in (0, 500) for i in range(15)]
    r = fs.get_online_features(["user_stats:ctr"], {"user_id": ids})
    assert r.statuses["ctr"] == ["PRESENT"] * len(ids)
    assert fs.audit()["user_stats"]["mismatches"] == 0
    fs.close()
    with pytest.raises(ClosedError):
        fs.get_online_features(FEATS, {"user_id": [1]})
    fs.close()  # idempotent
    np.testing.assert_equal(len(seqs), 60)


def test_log_segments_are_deleted_once_both_stores_hold_them(tmp_path, now) -> None:
    from offline import OfflineOptions
    from online import TreeOptions
    from store import FeatureStore

    opts = {
        "tree_options": TreeOptions(background=False, memtable_bytes=32 << 10),
        "offline_options": OfflineOptions(background=False, buffer_rows=500),
        "segment_bytes": 16 << 10,
    }
    fs = FeatureStore(tmp_path / "root", **opts)
    fs.apply(DEFS)
    for i in range(60):
        fs.ingest("user_stats", user_batch(list(range(i * 50, i * 50 + 50)), now))
    # 60 records of ~4 KiB filled ~15 segments of 16 KiB; those both stores flushed are gone
    assert fs.stats()["commit_log"]["segments"] < 5
    fs.flush()
    assert fs.stats()["commit_log"]["segments"] == 1  # only the active one
    fs.close()
    fs = FeatureStore(tmp_path / "root", **opts)
    assert fs.last_seq == 60
    r = fs.get_online_features(["user_stats:ctr"], {"user_id": list(range(3000))})
    assert r.statuses["ctr"] == ["PRESENT"] * 3000
    assert fs.audit()["user_stats"] == {
        "entities": 3000,
        "online_entities": 3000,
        "mismatches": 0,
        "examples": [],
    }
    fs.ingest("user_stats", user_batch([1], now))
    assert fs.last_seq == 61
    fs.close()


def test_null_created_means_ingest_time_and_given_created_is_kept(fs, now) -> None:
    from store.keys import int_to_key

    fs.ingest("user_stats", user_batch([1, 2], now, created=[None, 5]))  # 5 ns after the epoch
    # the version order's created_timestamp is read from the engine (the offline side is
    # compared with it by the audit)
    res = fs._snap.trees["user_stats"].get_many(int_to_key(np.array([1, 2], dtype=np.int64)))
    created = res.created_ts.tolist()
    assert created[0] >= now and created[1] == 5
    assert fs.audit()["user_stats"]["mismatches"] == 0
