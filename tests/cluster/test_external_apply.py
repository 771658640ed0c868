"""FeatureStore.ingest_at / apply_at / skip_at: externally sequenced, gap-tolerant, idempotent."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from offline import OfflineOptions
from online import TreeOptions
from store import FeatureStore, StoreError, ValidationError
from store.errors import DefinitionError

T0 = 1_700_000_000 * 10**9
DEFS = {
    "entities": [{"name": "user", "join_keys": ["user_id"], "dtype": "int64"}],
    "feature_views": [
        {"name": "u", "entities": ["user"], "features": [{"name": "x", "dtype": "int64"}]}
    ],
}
MORE = {
    **DEFS,
    "feature_views": [
        {
            "name": "u",
            "entities": ["user"],
            "features": [{"name": "x", "dtype": "int64"}, {"name": "y", "dtype": "string"}],
        }
    ],
}


def _open(root: Path) -> FeatureStore:
    return FeatureStore(
        root,
        tree_options=TreeOptions(background=False, t_wait_s=0.0),
        offline_options=OfflineOptions(background=False),
    )


def _batch(ids: list[int], x: int, created: bool = True) -> pa.Table:
    n = len(ids)
    cols = {
        "user_id": pa.array(ids, pa.int64()),
        "event_timestamp": pa.array([T0 + x] * n, pa.timestamp("ns", "UTC")),
        "x": pa.array([x] * n, pa.int64()),
    }
    if created:
        cols["created_timestamp"] = pa.array([T0 + x] * n, pa.timestamp("ns", "UTC"))
    return pa.table(cols)


def _x(fs: FeatureStore, ids: list[int]) -> list[object]:
    return fs.get_online_features(["u:x"], {"user_id": ids}).to_dict()["x"]


def test_gaps_skips_and_reopen_resume_exactly(tmp_path: Path) -> None:
    root = tmp_path / "t"
    fs = _open(root)
    assert fs.apply_at(1, DEFS) is not None
    assert fs.ingest_at(3, "u", _batch([1, 2], 10)) is True  # offsets have gaps
    assert fs.ingest_at(3, "u", _batch([1, 2], 99)) is False  # redelivered: skipped
    assert fs.ingest_at(2, "u", _batch([1], 98)) is False  # below the position: skipped
    assert fs.ingest_at(7, "u", _batch([2], 20)) is True
    assert fs.last_seq == 7 and _x(fs, [1, 2]) == [10, 20]
    fs.close()
    fs = _open(root)
    assert fs.last_seq == 7
    assert fs.ingest_at(7, "u", _batch([1], 97)) is False
    assert fs.ingest_at(8, "u", _batch([1], 30)) is True
    assert _x(fs, [1, 2]) == [30, 20]
    assert all(v["mismatches"] == 0 for v in fs.audit().values())
    assert fs.stats()["counters"]["ingest_batches"] == 1
    fs.close()


def test_definitions_and_skips_move_the_position_durably(tmp_path: Path) -> None:
    root = tmp_path / "t"
    fs = _open(root)
    fs.apply_at(1, DEFS)
    with pytest.raises(ValidationError, match="created_timestamp"):
        fs.ingest_at(2, "u", _batch([1], 1, created=False))
    assert fs.last_seq == 1
    assert fs.skip_at(2, "refused: no created_timestamp") is True
    assert fs.skip_at(2, "again") is False
    changes = fs.apply_at(5, MORE)
    assert changes is not None and fs.last_seq == 5
    assert fs.apply_at(5, MORE) is None
    bad = {**DEFS, "feature_views": [{**MORE["feature_views"][0], "features": []}]}
    with pytest.raises(DefinitionError):
        fs.apply_at(6, bad)
    assert fs.last_seq == 5
    fs.close()
    fs = _open(root)
    assert fs.last_seq == 5
    assert "y" in [f["name"] for f in fs.feature_view("u")["features"]]
    fs.close()


def test_plain_and_external_sequencing_do_not_mix(tmp_path: Path) -> None:
    ext = _open(tmp_path / "ext")
    ext.apply_at(1, DEFS)
    with pytest.raises(StoreError, match="externally sequenced"):
        ext.ingest("u", _batch([1], 1))
    ext.close()
    plain = _open(tmp_path / "plain")
    plain.apply(DEFS)
    plain.ingest("u", _batch([1], 1))
    with pytest.raises(StoreError, match="its own ingests"):
        plain.ingest_at(10, "u", _batch([1], 2))
    with pytest.raises(ValidationError, match="positive int"):
        plain.ingest_at(0, "u", _batch([1], 2))
    plain.close()
