"""FeatureStore.delete / forget end to end: tombstones online, rewrites offline, the sticky
table, refused as_of exports, the audit, recovery and the purge from disk."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from store.errors import UnknownViewError, ValidationError
from tests.store.conftest import HOUR, ns, open_store, user_batch

FEATS = ["user_stats:ctr", "user_stats:country"]


def _item_batch(ids, ts, price=1.0) -> dict:
    return {
        "item_id": list(ids),
        "event_timestamp": ns([ts] * len(ids)),
        "price": [price] * len(ids),
        "ctr": [0.5] * len(ids),
    }


def _pair_batch(users, items, ts) -> dict:
    n = len(users)
    return {
        "user_id": list(users),
        "item_id": list(items),
        "event_timestamp": ns([ts] * n),
        "score": [1.0] * n,
        "clicks": [1] * n,
    }


def _status(fs, ids):
    return fs.get_online_features(FEATS, {"user_id": ids}).statuses["ctr"]


def _export(fs, ids, ts, as_of_seq=None):
    ent = pd.DataFrame({"user_id": ids, "event_timestamp": [pd.Timestamp(ts, tz="UTC")] * len(ids)})
    return fs.get_historical_features(ent, FEATS, as_of_seq=as_of_seq).to_pydict()


def test_delete_reads_not_found_online_and_null_offline(fs, now) -> None:
    fs.ingest("user_stats", user_batch([1, 2, 3], now - HOUR))
    before = fs.last_seq
    out = fs.delete("user_stats", {"user_id": [2, 9]})
    assert out == {"seq": before + 1, "deleted": 1}
    assert _status(fs, [1, 2, 3]) == ["PRESENT", "NOT_FOUND", "PRESENT"]
    got = _export(fs, [1, 2, 3], now)
    assert got["ctr"][0] is not None and got["ctr"][1] is None and got["country"][2] == "c3"
    audit = fs.audit()["user_stats"]
    assert audit["mismatches"] == 0 and audit["deleted_entity_rows"] == 0


def test_late_events_are_dropped_and_new_history_starts(fs, now) -> None:
    fs.ingest("user_stats", user_batch([5], now - HOUR))
    fs.delete("user_stats", {"user_id": [5]})
    fs.ingest("user_stats", user_batch([5, 6], now - 2 * HOUR))  # late: 5 dropped, 6 kept
    assert fs.stats()["deletes"]["late_events_dropped"] == {"user_stats": 1}
    assert _status(fs, [5])[0] == "NOT_FOUND"
    later = now + 10**9 * 5
    fs.ingest("user_stats", user_batch([5], later, ctr=[0.9]))
    r = fs.get_online_features(FEATS, {"user_id": [5]}).to_dict()
    assert r["ctr"][0] == pytest.approx(0.9)
    assert fs.audit()["user_stats"]["mismatches"] == 0


def test_as_of_before_a_delete_is_refused(fs, now) -> None:
    s1 = fs.ingest("user_stats", user_batch([1, 2], now - HOUR))
    fs.delete("user_stats", {"user_id": [1]})
    with pytest.raises(ValidationError, match="before a delete of view 'user_stats'"):
        _export(fs, [1, 2], now, as_of_seq=s1)
    got = _export(fs, [1, 2], now, as_of_seq=fs.last_seq)
    assert got["ctr"][0] is None and got["ctr"][1] is not None


def test_delete_of_hashed_and_composite_views_by_forget(fs, now) -> None:
    fs.ingest("item_stats", _item_batch(["a", "b"], now - HOUR))
    fs.ingest("pair", _pair_batch([1, 1, 2], ["a", "b", "a"], now - HOUR))
    fs.ingest("user_stats", user_batch([1, 2], now - HOUR))
    out = fs.forget("item", ["a"])
    assert out["views"] == {"item_stats": 1, "pair": 2}
    r = fs.get_online_features(["item_stats:price"], {"item_id": ["a", "b"]})
    assert r.statuses["price"] == ["NOT_FOUND", "PRESENT"]
    r = fs.get_online_features(["pair:score"], {"user_id": [1, 1, 2], "item_id": ["a", "b", "a"]})
    assert r.statuses["score"] == ["NOT_FOUND", "PRESENT", "NOT_FOUND"]
    out = fs.forget("user", [1])
    assert out["views"] == {"user_stats": 1, "pair": 1}
    for rep in fs.audit().values():
        assert rep["mismatches"] == 0 and rep["deleted_entity_rows"] == 0
    # the entity comes back with a new history in the same hashed view
    fs.ingest("item_stats", _item_batch(["a"], now + 5 * 10**9, price=7.0))
    r = fs.get_online_features(["item_stats:price"], {"item_id": ["a"]}).to_dict()
    assert r["price"] == [7.0]
    assert fs.audit()["item_stats"]["mismatches"] == 0


def test_bad_requests_name_the_problem(fs) -> None:
    with pytest.raises(UnknownViewError):
        fs.delete("nope", {"user_id": [1]})
    with pytest.raises(ValidationError, match="unknown join keys"):
        fs.delete("user_stats", {"uid": [1]})
    with pytest.raises(ValidationError, match="must be int64"):
        fs.delete("user_stats", {"user_id": ["x"]})
    with pytest.raises(ValidationError, match="unknown entity 'ghost'"):
        fs.forget("ghost", [1])


def test_delete_survives_reopen_and_stays_sticky(tmp_path, now) -> None:

    root = tmp_path / "r"
    # a process that ingests, deletes and dies without closing: only the log holds them
    code = (
        "import os, sys; sys.path.insert(0, os.getcwd());"
        "from tests.store.conftest import DEFS, HOUR, open_store, user_batch;"
        f"fs = open_store({str(root)!r}); fs.apply(DEFS);"
        f"fs.ingest('user_stats', user_batch([1, 2], {now} - HOUR));"
        "fs.delete('user_stats', {'user_id': [1]}); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    fs = open_store(root)
    try:
        assert _status(fs, [1, 2])[0] == "NOT_FOUND"
        assert _export(fs, [1, 2], now)["ctr"][0] is None
        fs.ingest("user_stats", user_batch([1], now - 3 * HOUR))
        assert _status(fs, [1])[0] == "NOT_FOUND"
        assert fs.audit()["user_stats"]["mismatches"] == 0
        fs.compact()
        fs.close()
        fs = open_store(root)
        assert _status(fs, [1])[0] == "NOT_FOUND"
        fs.ingest("user_stats", user_batch([1], now - 3 * HOUR))
        assert fs.stats()["deletes"]["late_events_dropped"] == {"user_stats": 1}
    finally:
        fs.close()


def test_compact_removes_every_byte_of_a_deleted_entity(tmp_path, now) -> None:
    from tests.store.conftest import DEFS

    root = tmp_path / "r"
    fs = open_store(root, segment_bytes=1 << 12)
    fs.apply(DEFS)
    marker = "MARKER-7f3a9c"
    fs.ingest("user_stats", user_batch([1, 2, 3], now - HOUR, country=["x", marker, "y"]))
    fs.flush()  # the marker now in Parquet, an sstable and (until trimmed) the log
    fs.ingest("user_stats", user_batch([4], now - HOUR))
    fs.delete("user_stats", {"user_id": [2]})
    fs.compact()
    hits = [p for p in root.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()]
    assert hits == []
    assert _status(fs, [1, 2, 3, 4]) == ["PRESENT", "NOT_FOUND", "PRESENT", "PRESENT"]
    assert fs.audit()["user_stats"]["mismatches"] == 0
    fs.close()


def test_hashed_slots_survive_deletes_and_compaction(tmp_path, now, tiny_hash_space) -> None:
    from tests.store.conftest import DEFS

    fs = open_store(tmp_path / "r")
    try:
        fs.apply(DEFS)
        items = [f"i{k}" for k in range(12)]  # 4 buckets: most share a probe chain
        fs.ingest("item_stats", _item_batch(items, now - HOUR))
        fs.delete("item_stats", {"item_id": items[:6:2]})
        fs.compact()
        fs.ingest("item_stats", _item_batch(items[:2], now + 5 * 10**9, price=9.0))
        fs.compact()
        r = fs.get_online_features(["item_stats:price"], {"item_id": items}).to_dict()
        want = [9.0, 9.0, None, 1.0, None, 1.0] + [1.0] * 6
        assert r["price"] == want
        assert fs.audit()["item_stats"]["mismatches"] == 0
    finally:
        fs.close()


def test_late_events_racing_a_delete_never_resurrect_it(fs, now) -> None:
    import threading

    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            fs.ingest("user_stats", user_batch([7, 8], now - HOUR))

    th = threading.Thread(target=writer)
    th.start()
    try:
        for _ in range(3):
            fs.delete("user_stats", {"user_id": [7]})
    finally:
        stop.set()
        th.join()
    assert _status(fs, [7, 8]) == ["NOT_FOUND", "PRESENT"]
    assert _export(fs, [7], now)["ctr"] == [None]
    report = fs.audit()["user_stats"]
    assert report["mismatches"] == 0 and report["deleted_entity_rows"] == 0


def test_ingest_goes_on_while_a_delete_rewrites_offline_files(fs, now, monkeypatch) -> None:
    import threading

    from offline import delete_stage

    fs.ingest("user_stats", user_batch([1, 2, 3], now - HOUR, country=["x", "OLD2", "y"]))
    fs.flush()
    staging, release = threading.Event(), threading.Event()
    real = delete_stage.rewrite_without

    def held(*args, **kwargs):  # the delete's offline rewrite, held until the test says
        staging.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(delete_stage, "rewrite_without", held)
    out: dict = {}
    th = threading.Thread(target=lambda: out.update(fs.delete("user_stats", {"user_id": [2]})))
    th.start()
    try:
        assert staging.wait(30)
        # acknowledged while the rewrite is held: the writer does not wait for it; one of them
        # is a new row of the entity, sequenced before the delete, so it goes too
        s1 = fs.ingest("user_stats", user_batch([4], now - HOUR))
        s2 = fs.ingest("user_stats", user_batch([2], now - HOUR, country=["MID2"]))
        fs.flush()
        assert _status(fs, [2, 4]) == ["PRESENT", "PRESENT"]  # not deleted yet
    finally:
        release.set()
        th.join(30)
    assert out["seq"] > s2 > s1 and out["deleted"] == 1
    assert _status(fs, [1, 2, 3, 4]) == ["PRESENT", "NOT_FOUND", "PRESENT", "PRESENT"]
    assert _export(fs, [2, 4], now)["country"] == [None, "c4"]
    rows = fs._off.scan(fs._snap.storage["user_stats"], columns=["user_id"]).read_all()
    assert sorted(rows.column("user_id").to_pylist()) == [1, 3, 4]
    report = fs.audit()["user_stats"]
    assert report["mismatches"] == 0 and report["deleted_entity_rows"] == 0


def test_ttl_purge_of_hashed_and_composite_views_keeps_their_slots(
    tmp_path, now, tiny_hash_space
) -> None:
    from tests.definitions import definitions, view

    defs = definitions(
        view("item_stats", ["item"], {"price": "float64", "ctr": "float64"}, ttl="2h"),
        view("pair", ["user", "item"], {"score": "float64", "clicks": "int64"}, ttl="2h"),
    )
    fs = open_store(tmp_path / "r")
    try:
        fs.apply(defs)
        items = [f"i{k}" for k in range(12)]  # 4 buckets: the fresh ones probe past the old
        fs.ingest("item_stats", _item_batch(items[:6], now - 5 * HOUR))
        fs.ingest("item_stats", _item_batch(items[6:], now - HOUR, price=2.0))
        fs.ingest("pair", _pair_batch([1, 2], ["a", "b"], now - 5 * HOUR))
        fs.ingest("pair", _pair_batch([3], ["c"], now - HOUR))

        def read() -> tuple[list, list, list]:
            r = fs.get_online_features(["item_stats:price"], {"item_id": items})
            p = fs.get_online_features(
                ["pair:score"], {"user_id": [1, 2, 3], "item_id": list("abc")}
            )
            return r.statuses["price"], r.to_dict()["price"], p.statuses["score"]

        before = read()
        assert before[0] == ["OUTSIDE_MAX_AGE"] * 6 + ["PRESENT"] * 6
        trees = fs._snap.trees
        for tree in trees.values():  # a compaction writing the deepest level purges
            tree.compact(full=True)
        assert read() == before
        assert trees["item_stats"].stats()["purged"]["expired"] == 6
        assert trees["pair"].stats()["purged"]["expired"] == 2
        fs.ingest("item_stats", _item_batch(items[:2] + ["i99"], now, price=9.0))
        trees["item_stats"].compact(full=True)
        r = fs.get_online_features(["item_stats:price"], {"item_id": items + ["i99"]}).to_dict()
        assert r["price"] == [9.0, 9.0] + [None] * 4 + [2.0] * 6 + [9.0]
        assert fs.audit()["item_stats"]["mismatches"] == 0
        assert fs.audit()["pair"]["mismatches"] == 0
    finally:
        fs.close()


def test_files_kept_for_listed_snapshots_lose_their_grace_on_delete(tmp_path, now) -> None:
    from tests.store.conftest import DEFS

    root = tmp_path / "r"
    fs = open_store(root, segment_bytes=1 << 12)
    try:
        fs.apply(DEFS)
        marker = "MARKER-5e1d0b"
        fs.ingest("user_stats", user_batch([1, 2, 3], now - HOUR, country=["x", marker, "y"]))
        fs.flush()
        fs.ingest("user_stats", user_batch([4], now - HOUR))
        fs.flush()
        fs._off.compact(min_files=2)  # the two files are retired, kept for the grace period

        def hits() -> list:
            return [p for p in root.rglob("*.parquet") if marker.encode() in p.read_bytes()]

        assert len(hits()) == 2  # the merged file and the retired one
        fs.delete("user_stats", {"user_id": [2]})
        assert hits() == []  # the retired file went with the delete, not after its grace
        fs.compact()
        assert [
            p for p in root.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()
        ] == []
        assert _export(fs, [1, 2], now)["country"] == ["x", None]
    finally:
        fs.close()
