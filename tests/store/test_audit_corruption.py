"""A Parquet file of a view damaged in the middle: export, historical reads and the audit raise
store.CorruptionError naming that file and what to do (never a bare EngineError)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from store import CorruptionError, FeatureStore
from tests.store.conftest import DEFS, open_store

TS = pa.timestamp("ns", tz="UTC")
T0 = 3_786_912_000_000_000_000  # 2090: far from any ttl
ROWS = 20_000


def _users(rng: np.random.Generator) -> pa.Table:
    ids = np.arange(ROWS)
    return pa.table(
        {
            "user_id": pa.array(ids),
            "event_timestamp": pa.array(T0 + rng.integers(0, 10**12, ROWS), TS),
            "ctr": pa.array(rng.random(ROWS, dtype=np.float32)),
            "country": pa.array(np.char.add("c", (ids % 97).astype(str))),
            "emb": pa.FixedSizeListArray.from_arrays(
                pa.array(rng.random(4 * ROWS, dtype=np.float32)), 4
            ),
        }
    )


def garble_column(path: Path, column: str, data: bytes, header: bool = False) -> None:
    """Overwrite the middle of `column`'s compressed data in row group 0 (or its first page
    header, `header=True`) with `data`."""
    meta = pq.read_metadata(path)
    for i in range(meta.num_columns):
        chunk = meta.row_group(0).column(i)
        if chunk.path_in_schema == column:
            at = chunk.data_page_offset
            if not header:  # the chunk starts at its dictionary page, when it has one
                start = chunk.dictionary_page_offset or chunk.data_page_offset
                at = start + chunk.total_compressed_size // 2
            with open(path, "r+b") as f:
                f.seek(at)
                f.write(data)
            return
    raise AssertionError(column)


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, Path]:
    """A flushed store whose only user_stats Parquet file has garbled `ctr` data."""
    root = tmp_path / "root"
    with open_store(root) as fs:
        fs.apply(DEFS)
        fs.ingest("user_stats", _users(np.random.default_rng(5)))
        fs.flush()
    (victim,) = (root / "offline" / "user_stats").rglob("*.parquet")
    garble_column(victim, "ctr", b"\xa5" * 64)
    return root, victim


def _assert_names(info: pytest.ExceptionInfo, victim: Path) -> None:
    assert info.value.path == str(victim)
    message = str(info.value)
    assert str(victim) in message and "Restore" in message and "damaged" in message


def test_export_historical_and_audit_name_the_damaged_file(damaged, tmp_path) -> None:
    root, victim = damaged
    ents = pa.table(
        {"user_id": pa.array([1, 2]), "event_timestamp": pa.array([T0 + 2 * 10**12] * 2, TS)}
    )
    with open_store(root) as fs:
        for call in (
            lambda: fs.export_training(ents, ["user_stats:ctr"], tmp_path / "out.parquet"),
            lambda: fs.get_historical_features(ents, ["user_stats:ctr"]),
            fs.audit,
        ):
            with pytest.raises(CorruptionError) as info:
                call()
            _assert_names(info, victim)
        assert not (tmp_path / "out.parquet").exists()


def test_a_garbled_page_header_in_the_audit_names_the_file(tmp_path) -> None:
    root = tmp_path / "root"
    with open_store(root) as fs:
        fs.apply(DEFS)
        fs.ingest("user_stats", _users(np.random.default_rng(6)))
        fs.flush()
    (victim,) = (root / "offline" / "user_stats").rglob("*.parquet")
    garble_column(victim, "event_timestamp", b"\xff" * 16, header=True)
    fs = FeatureStore(root)
    try:
        with pytest.raises(CorruptionError) as info:
            fs.audit()
        _assert_names(info, victim)
    finally:
        fs.close()
