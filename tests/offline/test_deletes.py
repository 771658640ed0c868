"""OfflineStore.delete: the affected files are rewritten without the entities, durable at
once (durable_seq = the delete's seq), replays change nothing, and running queries keep the
files they started with."""

from __future__ import annotations

import pyarrow as pa

from offline import OfflineOptions, OfflineStore
from tests.offline.conftest import DAY, T0, TS

SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("item_id", pa.string()),
        ("event_timestamp", TS),
        ("created_timestamp", TS),
        ("v", pa.string()),
    ]
)


def _batch(users: list[int], items: list[str], day: int, v: str) -> pa.Table:
    n = len(users)
    ts = pa.array([T0 + day * DAY] * n, TS)
    return pa.table(
        {
            "user_id": users,
            "item_id": items,
            "event_timestamp": ts,
            "created_timestamp": ts,
            "v": [f"{v}{u}" for u in users],
        },
        schema=SCHEMA,
    )


def _open(root) -> OfflineStore:
    off = OfflineStore(root, OfflineOptions(background=False))
    off.register_view("pairs", SCHEMA, ["user_id", "item_id"])
    return off


def _rows(off: OfflineStore) -> list[tuple]:
    t = off.scan("pairs", columns=["user_id", "item_id", "v"]).read_all()
    return sorted(zip(*(t.column(c).to_pylist() for c in t.column_names), strict=True))


def test_delete_rewrites_files_and_buffer(tmp_path) -> None:
    off = _open(tmp_path)
    off.append("pairs", _batch([1, 2, 3], ["a", "a", "b"], 0, "x"), 1)
    off.flush()
    off.append("pairs", _batch([1, 4], ["a", "c"], 1, "y"), 2)  # still buffered
    ent = pa.table({"user_id": [1, 3, 9], "item_id": ["a", "x", "z"]})
    found = off.delete("pairs", ent, 3)
    assert found.tolist() == [True, False, False]
    assert _rows(off) == [(2, "a", "x2"), (3, "b", "x3"), (4, "c", "y4")]
    assert off.durable_seq("pairs") == 3
    blob = b"".join(p.read_bytes() for p in (tmp_path / "offline").rglob("*.parquet"))
    assert b"x1" not in blob and b"y1" not in blob and b"x2" in blob
    assert off.delete("pairs", ent, 3).tolist() == [False, False, False]  # a replay
    off.append("pairs", _batch([1], ["a"], 2, "z"), 4)  # a new history
    assert (1, "a", "z1") in _rows(off)
    off.close()
    off = _open(tmp_path)
    assert _rows(off) == [(1, "a", "z1"), (2, "a", "x2"), (3, "b", "x3"), (4, "c", "y4")]
    off.close()


def test_a_running_scan_keeps_its_files(tmp_path) -> None:
    off = _open(tmp_path)
    off.append("pairs", _batch([1, 2], ["a", "a"], 0, "x"), 1)
    off.flush()
    reader = off.scan("pairs", columns=["user_id"])  # pins the files now
    off.delete("pairs", pa.table({"user_id": [1], "item_id": ["a"]}), 2)
    assert sorted(reader.read_all().column("user_id").to_pylist()) == [1, 2]
    assert _rows(off) == [(2, "a", "x2")]
    off.close()


def test_deleting_every_row_of_a_file_drops_it(tmp_path) -> None:
    off = _open(tmp_path)
    off.append("pairs", _batch([1], ["a"], 0, "x"), 1)
    off.append("pairs", _batch([2], ["a"], 5, "x"), 2)
    off.flush()
    assert off.stats()["pairs"]["files"] == 2
    off.delete("pairs", pa.table({"user_id": [1], "item_id": ["a"]}), 3)
    assert off.stats()["pairs"]["files"] == 1 and _rows(off) == [(2, "a", "x2")]
    off.close()


def _names(root) -> set[str]:
    return {p.name for p in (root / "offline" / "pairs").rglob("*.parquet")}


def test_a_staged_delete_commits_with_the_rows_written_since(tmp_path) -> None:
    off = _open(tmp_path)
    off.append("pairs", _batch([1, 2, 3], ["a", "a", "b"], 0, "x"), 1)
    off.append("pairs", _batch([5], ["e"], 3, "x"), 2)
    off.flush()
    ent = pa.table({"user_id": [1, 3, 7], "item_id": ["a", "x", "g"]})
    staged = off.prepare_delete("pairs", ent)
    assert staged.found.tolist() == [True, False, False]
    assert len(staged.swaps) == 1  # day 0 only; day 3 holds none of them
    assert _rows(off)[0] == (1, "a", "x1")  # nothing visible changes before the commit
    # sequenced before the delete, after staging: one flushed, one buffered
    off.append("pairs", _batch([7], ["g"], 1, "y"), 3)
    off.flush()
    off.append("pairs", _batch([1, 4], ["a", "c"], 0, "y"), 4)
    off.flush()
    off.compact(min_files=2)  # day 0 holds a staged file: left alone
    assert off.stats()["pairs"]["files"] == 4
    off.append("pairs", _batch([7], ["g"], 2, "z"), 5)  # buffered
    found = off.delete("pairs", ent, 6, staged)
    assert found.tolist() == [True, False, True]
    assert _rows(off) == [(2, "a", "x2"), (3, "b", "x3"), (4, "c", "y4"), (5, "e", "x5")]
    assert off.durable_seq("pairs") == 6
    blob = b"".join(p.read_bytes() for p in (tmp_path / "offline").rglob("*.parquet"))
    for gone in (b"x1", b"y1", b"y7", b"z7"):
        assert gone not in blob
    off.discard_delete(staged)  # after a commit: changes nothing
    off.close()
    off = _open(tmp_path)
    assert _rows(off) == [(2, "a", "x2"), (3, "b", "x3"), (4, "c", "y4"), (5, "e", "x5")]
    off.close()


def test_a_discarded_or_crashed_stage_leaves_no_file(tmp_path) -> None:
    off = _open(tmp_path)
    off.append("pairs", _batch([1, 2], ["a", "a"], 0, "x"), 1)
    off.flush()
    before = _names(tmp_path)
    ent = pa.table({"user_id": [1], "item_id": ["a"]})
    off.discard_delete(off.prepare_delete("pairs", ent))
    assert _names(tmp_path) == before and len(_rows(off)) == 2
    off.prepare_delete("pairs", ent)  # never committed: the process "dies" here
    assert len(_names(tmp_path)) == len(before) + 1
    off.close()
    off = _open(tmp_path)  # reopen deletes the unnamed staged file
    assert _names(tmp_path) == before and len(_rows(off)) == 2
    off.close()


def test_a_staged_file_whose_original_went_is_not_installed(tmp_path) -> None:
    off = _open(tmp_path)
    off.append("pairs", _batch([1, 2], ["a", "a"], 0, "x"), 1)
    off.append("pairs", _batch([1, 3], ["a", "b"], 9, "y"), 2)
    off.flush()
    off.set_retention("pairs", 5 * DAY)
    ent = pa.table({"user_id": [1], "item_id": ["a"]})
    staged = off.prepare_delete("pairs", ent)
    assert len(staged.swaps) == 2
    off.drop_expired(now_ns=T0 + 10 * DAY)  # day 0 goes while the delete is staged
    assert off.delete("pairs", ent, 3, staged).tolist() == [True]
    assert _rows(off) == [(3, "b", "y3")]
    assert len(_names(tmp_path)) == 1
    off.close()
