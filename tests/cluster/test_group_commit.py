"""Group commit of a tablet (store.external.ingest_group_at, cluster/applier.py) and the node's
durable commits-topic ledger (cluster/commits.py LedgerFile), without a broker."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from cluster.applier import apply_ready
from cluster.commits import Ledger, LedgerFile, encode_offsets
from cluster.control import encode_definitions
from cluster.errors import ClusterError
from cluster.record import BATCH, KIND, VIEW, LogRecord, encode_table
from cluster.staging import Ready
from offline import OfflineOptions
from online import TreeOptions
from store import FeatureStore
from store.commitlog import CommitLog
from store.external import ingest_group_at

T0 = 1_700_000_000 * 10**9
DEFS = {
    "entities": [{"name": "user", "join_keys": ["user_id"], "dtype": "int64"}],
    "feature_views": [
        {"name": "u", "entities": ["user"], "features": [{"name": "x", "dtype": "int64"}]}
    ],
}
R = "rickhouse-router-x"


def _open(root: Path) -> FeatureStore:
    return FeatureStore(
        root,
        tree_options=TreeOptions(background=False, t_wait_s=0.0),
        offline_options=OfflineOptions(background=False),
    )


def _batch(ids: list[int], x: int, created: bool = True) -> pa.Table:
    n = len(ids)
    ts = pa.timestamp("ns", "UTC")
    cols = {
        "user_id": pa.array(ids, pa.int64()),
        "event_timestamp": pa.array([T0 + x] * n, ts),
        "x": pa.array([x] * n, pa.int64()),
    }
    if created:
        cols["created_timestamp"] = pa.array([T0 + x] * n, ts)
    return pa.table(cols)


def _x(fs: FeatureStore, ids: list[int]) -> list[object]:
    return fs.get_online_features(["u:x"], {"user_id": ids}).to_dict()["x"]


def _syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = CommitLog.sync

    def counting(self: CommitLog, seq: int) -> None:
        calls.append(seq)
        real(self, seq)

    monkeypatch.setattr(CommitLog, "sync", counting)
    return calls


def test_a_group_is_one_fsync_refusals_are_skips_and_reopen_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = _open(tmp_path / "t")
    fs.apply_at(1, DEFS)
    syncs = _syncs(monkeypatch)
    got = ingest_group_at(
        fs,
        [
            (3, "u", _batch([1, 2], 10)),
            (4, "u", _batch([1], 11, created=False)),  # refused alike by every replica
            (6, None, "commit record of an empty batch"),
            (8, "nope", _batch([1], 12)),  # unknown view: refused
            (9, "u", _batch([2], 20)),
        ],
    )
    assert syncs == [9]  # one fsync for the whole group
    assert got[0] is None and got[2] is None and got[4] is None
    assert got[1] is not None and "created_timestamp" in got[1] and got[1].startswith("offset 3")
    assert got[3] is not None and "nope" in got[3]
    assert fs.last_seq == 9 and _x(fs, [1, 2]) == [10, 20]
    # redelivered after a restart: nothing done
    assert ingest_group_at(fs, [(3, "u", _batch([1], 99)), (9, "u", _batch([1], 99))]) == [None] * 2
    assert _x(fs, [1, 2]) == [10, 20] and len(syncs) == 1
    fs.close()
    fs = _open(tmp_path / "t")
    assert fs.last_seq == 9 and _x(fs, [1, 2]) == [10, 20]
    assert (
        ingest_group_at(fs, [(9, "u", _batch([1], 98)), (10, "u", _batch([1], 30))]) == [None] * 2
    )
    assert _x(fs, [1, 2]) == [30, 20]
    assert all(v["mismatches"] == 0 for v in fs.audit().values())
    fs.close()


def _ready(seq: int, kind: str, value: bytes, view: str = "u") -> Ready:
    record = LogRecord(0, seq - 1, {VIEW: view.encode(), KIND: kind.encode()}, value)
    return Ready(seq, view, kind, [record])


def test_applier_groups_data_and_applies_definitions_alone_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = _open(tmp_path / "t")
    syncs = _syncs(monkeypatch)
    more = {
        **DEFS,
        "feature_views": [
            {
                **DEFS["feature_views"][0],
                "features": [{"name": "x", "dtype": "int64"}, {"name": "y", "dtype": "string"}],
            }
        ],  # fmt: skip
    }
    readies = [
        _ready(1, "control", encode_definitions(DEFS), ""),
        _ready(2, "data", encode_table(_batch([1], 1))),
        _ready(3, "data", encode_table(_batch([2], 2))),
        _ready(4, "data", b"not arrow"),
        _ready(5, "control", encode_definitions(more), ""),
        _ready(6, "data", encode_table(_batch([1], 6).append_column("y", pa.array(["y"])))),
        _ready(7, "what", b""),
    ]
    out = apply_ready(fs, readies)
    assert [o is None for o in out] == [True, True, True, False, True, True, False]
    assert "ArrowInvalid" in (out[3] or "") and "unknown kind" in (out[6] or "")
    assert fs.last_seq == 7 and _x(fs, [1, 2]) == [6, 2]
    assert len(syncs) < 7  # the data runs shared their fsyncs
    fs.close()


def _record(kind: str, batch: str, value: bytes = b"") -> LogRecord:
    return LogRecord(0, 0, {KIND: kind.encode(), BATCH: batch.encode()}, value)


def test_ledger_file_restores_commits_and_dead_sessions(tmp_path: Path) -> None:
    ledger = Ledger([0, 1])
    ledger.add(_record("session", f"{R}/s1"), {})
    ledger.add(_record("commit", f"{R}/s1/0", encode_offsets({0: 4, 1: 9})), {})
    ledger.add(_record("session", f"{R}/s2"), {})  # s1 ended
    ledger.add(_record("commit", f"{R}/s2/3", encode_offsets({1: 12})), {})
    path = LedgerFile(tmp_path / "ledger.json")
    path.save(ledger, 41)
    back, offset = LedgerFile(tmp_path / "ledger.json").load([0, 1], {0: 5, 1: 0})
    assert offset == 41
    assert back.committed == {f"{R}/s1/0": {1: 9}, f"{R}/s2/3": {1: 12}}  # p0 applied
    assert back.dead(f"{R}/s1/7", 0)  # its session ended
    assert back.dead(f"{R}/s2/2", 1) and not back.dead(f"{R}/s2/4", 1)
    fresh, offset = LedgerFile(tmp_path / "none.json").load([0], {})
    assert offset == 0 and not fresh.committed
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ClusterError, match="bad.json"):
        LedgerFile(tmp_path / "bad.json").load([0], {})
