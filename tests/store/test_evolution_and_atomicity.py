"""A bad batch is refused whole; schema evolution via apply; collision safety in a tiny hash space."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from store.errors import DefinitionError, ValidationError
from tests.store.conftest import DEFS, ns, open_store, user_batch


def _everything(fs, ids, now):
    online = fs.get_online_features(["user_stats:ctr"], {"user_id": ids}).statuses["ctr"]
    ent = pd.DataFrame(
        {"user_id": ids, "event_timestamp": [pd.Timestamp(now, tz="UTC")] * len(ids)}
    )
    offline = fs.get_historical_features(ent, ["user_stats:ctr"]).column("ctr").to_pylist()
    return online, offline


@pytest.mark.parametrize(
    ("column", "value"),
    [("ctr", "high"), ("user_id", None), ("event_timestamp", None), ("emb", [1.0]), ("country", 3)],
)
def test_a_bad_batch_is_refused_whole_and_nothing_of_it_is_visible(
    tmp_path, now, column, value
) -> None:
    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    fs.ingest("user_stats", user_batch([1], now))
    bad = user_batch([2, 3, 4, 5], now)
    bad[column][2] = value
    with pytest.raises(ValidationError) as err:
        fs.ingest("user_stats", bad)
    assert (err.value.view, err.value.column, err.value.row) == ("user_stats", column, 2)
    assert fs.last_seq == 1 and fs.stats()["commit_log"]["last_seq"] == 1
    assert _everything(fs, [2, 3, 4, 5], now) == (["NOT_FOUND"] * 4, [None] * 4)
    assert fs.audit()["user_stats"]["entities"] == 1
    assert fs.ingest("user_stats", user_batch([6], now)) == 2  # seqs stay dense
    fs.close()
    fs = open_store(tmp_path / "root")  # nothing of it comes back from the log either
    assert _everything(fs, [2, 3, 4, 5, 6], now)[0] == ["NOT_FOUND"] * 4 + ["PRESENT"]
    assert fs.audit()["user_stats"]["mismatches"] == 0
    fs.close()


def test_adding_a_feature_keeps_old_rows_readable_as_null_across_reopen(tmp_path, now) -> None:
    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    fs.ingest("user_stats", user_batch([1, 2], now))
    fs.flush()
    fs.ingest("user_stats", user_batch([3], now))  # only in the log and the memtable
    assert not fs.apply(copy.deepcopy(DEFS))["changed"]
    new = copy.deepcopy(DEFS)
    new["feature_views"][0]["features"].append({"name": "clicks", "dtype": "int64"})
    changes = fs.apply(new)
    assert changes["feature_views"]["modified"] == ["user_stats"]
    batch = user_batch([4], now)
    batch["clicks"] = [7]
    fs.ingest("user_stats", batch)
    r = fs.get_online_features(["user_stats:clicks", "user_stats:ctr"], {"user_id": [1, 3, 4]})
    assert r.to_dict()["clicks"] == [None, None, 7]
    assert r.statuses["clicks"] == ["NULL_VALUE", "NULL_VALUE", "PRESENT"]
    assert fs.audit()["user_stats"]["mismatches"] == 0
    fs.close()
    fs = open_store(tmp_path / "root")
    assert fs.get_online_features(["user_stats:clicks"], {"user_id": [1, 3, 4]}).to_dict()[
        "clicks"
    ] == [None, None, 7]
    ent = pd.DataFrame({"user_id": [1, 4], "event_timestamp": [pd.Timestamp(now, tz="UTC")] * 2})
    assert fs.get_historical_features(ent, ["user_stats:clicks"]).column("clicks").to_pylist() == [
        None,
        7,
    ]
    assert fs.audit()["user_stats"]["mismatches"] == 0
    fs.close()


def test_type_change_and_drop_are_refused_with_data_and_forced_drop_deletes_it(
    tmp_path, now
) -> None:
    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    fs.ingest("user_stats", user_batch([1, 2], now))
    fs.ingest(
        "item_stats", {"item_id": ["a"], "event_timestamp": ns([now]), "price": [1.0], "ctr": [0.1]}
    )
    changed = copy.deepcopy(DEFS)
    changed["feature_views"][0]["features"][0]["dtype"] = "float64"
    with pytest.raises(
        DefinitionError, match="'user_stats' holds data.*'ctr' changes type from float32 to float64"
    ):
        fs.apply(changed)
    dropped = copy.deepcopy(DEFS)
    dropped["feature_views"] = dropped["feature_views"][1:]
    dropped["feature_services"] = dropped["push_sources"] = []
    with pytest.raises(
        DefinitionError, match="'user_stats' holds data and the new definitions drop it"
    ):
        fs.apply(dropped)
    assert fs.get_online_features(["user_stats:ctr"], {"user_id": [1]}).statuses["ctr"] == [
        "PRESENT"
    ]
    changes = fs.apply(changed, force=True)
    assert changes["dropped_data"] == ["user_stats"]
    assert (
        fs.get_online_features(["user_stats:ctr"], {"user_id": [1, 2]}).statuses["ctr"]
        == ["NOT_FOUND"] * 2
    )
    fs.ingest("user_stats", user_batch([3], now))
    assert fs.audit()["user_stats"] == {
        "entities": 1,
        "online_entities": 1,
        "mismatches": 0,
        "examples": [],
    }
    fs.close()
    # the dropped incarnation's records in the commit log are never replayed
    fs = open_store(tmp_path / "root")
    r = fs.get_online_features(["user_stats:ctr"], {"user_id": [1, 2, 3]})
    assert r.statuses["ctr"] == ["NOT_FOUND", "NOT_FOUND", "PRESENT"]
    assert fs.get_online_features(["item_stats:price"], {"item_id": ["a"]}).to_dict()["price"] == [
        1.0
    ]
    assert all(v["mismatches"] == 0 for v in fs.audit().values())
    ent = pd.DataFrame({"user_id": [3], "event_timestamp": [pd.Timestamp(now, tz="UTC")]})
    hist = fs.get_historical_features(ent, ["user_stats:ctr"], full_feature_names=True)
    assert hist.column_names == ["user_id", "event_timestamp", "user_stats__ctr"]
    out = fs.export_training(
        ent, ["user_stats:ctr"], tmp_path / "x.parquet", full_feature_names=True
    )
    import pyarrow.parquet as pq

    assert pq.read_table(out["path"]).column_names == hist.column_names
    assert (
        fs.stats()["offline"]["user_stats"]["buffer_rows"]
        + fs.stats()["offline"]["user_stats"]["files"]
        > 0
    )
    fs.close()


def test_hash_collisions_never_return_or_overwrite_another_entity(
    tmp_path, now, tiny_hash_space
) -> None:
    rng = np.random.default_rng(3)
    fs = open_store(tmp_path / "root")  # 4 buckets: nearly every key collides
    fs.apply(DEFS)
    truth: dict[tuple[int, str], float] = {}
    for batch in range(12):
        users = rng.integers(0, 25, size=40).tolist()
        items = [f"i{int(x)}" for x in rng.integers(0, 12, size=40)]
        scores = rng.random(40).round(6).tolist()
        fs.ingest(
            "pair",
            {
                "user_id": users,
                "item_id": items,
                "event_timestamp": ns([now + batch] * 40),
                "score": scores,
                "clicks": [batch] * 40,
            },
        )
        for u, i, s in zip(users, items, scores, strict=True):
            truth[(u, i)] = s
        if batch == 5:
            fs.flush()
    assert len(truth) > 200  # more entities than one bucket could hold without probing

    def check(store) -> None:
        keys = list(truth)
        strangers = [(999, "i0"), (0, "zz")]
        r = store.get_online_features(
            ["pair:score"],
            {
                "user_id": [u for u, _ in keys + strangers],
                "item_id": [i for _, i in keys + strangers],
            },
        )
        assert r.to_dict()["score"] == [truth[k] for k in keys] + [None, None]
        report = store.audit()["pair"]
        assert report["mismatches"] == 0 and report["entities"] == report["online_entities"] == len(
            truth
        )

    check(fs)
    fs.close()
    fs = open_store(tmp_path / "root")  # replayed from the log: same keys
    check(fs)
    fs.compact()
    check(fs)
    fs.close()


def test_concurrent_ingests_of_colliding_keys_keep_every_entity_apart(
    tmp_path, now, tiny_hash_space
) -> None:
    import threading

    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    results: list[tuple[int, list[tuple[int, str]], list[float]]] = []
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        rng = np.random.default_rng(w)
        try:
            for _ in range(12):
                users = rng.integers(0, 15, size=20).tolist()
                items = [f"i{int(x)}" for x in rng.integers(0, 10, size=20)]
                scores = rng.random(20).round(6).tolist()
                seq = fs.ingest(
                    "pair",
                    {
                        "user_id": users,
                        "item_id": items,
                        "event_timestamp": ns([now] * 20),
                        "score": scores,
                        "clicks": [w] * 20,
                    },
                )
                results.append((seq, list(zip(users, items, strict=True)), scores))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    truth: dict[tuple[int, str], float] = {}
    for _, keys, scores in sorted(results, key=lambda r: r[0]):  # created time rises with seq
        for k, s in zip(keys, scores, strict=True):
            truth[k] = s
    keys = list(truth)
    r = fs.get_online_features(
        ["pair:score"], {"user_id": [u for u, _ in keys], "item_id": [i for _, i in keys]}
    )
    assert r.to_dict()["score"] == [truth[k] for k in keys]
    report = fs.audit()["pair"]
    assert report["mismatches"] == 0 and report["online_entities"] == len(truth)
    fs.close()


def test_reads_during_apply_never_fail(tmp_path, now) -> None:
    import threading

    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    fs.ingest("user_stats", user_batch([1, 2], now))
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def reader() -> None:
        try:
            while not stop.is_set():
                r = fs.get_online_features(["user_stats:ctr"], {"user_id": [1, 2]})
                assert r.statuses["ctr"] == ["PRESENT", "PRESENT"]
                reads[0] += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    defs = copy.deepcopy(DEFS)
    for k in range(5):  # each apply reopens the view's tree with one more feature
        defs["feature_views"][0]["features"].append({"name": f"extra{k}", "dtype": "int32"})
        fs.apply(defs)
    stop.set()
    t.join()
    assert not errors and reads[0] > 0
    fs.close()
