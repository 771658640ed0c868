"""A Parquet file damaged in the middle (not truncated): every read that meets it raises
OfflineCorruptionError naming that file, even when DuckDB's own error names no file
(offline/damage.py, offline/errors.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offline import FeatureQuery, OfflineCorruptionError, OfflineError, OfflineStore
from offline.damage import Candidate, could_be_damage, find_damaged
from offline.errors import query_error
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
ROWS = 20_000


def _batch(day: int, rng: np.random.Generator) -> pa.Table:
    keys = np.arange(ROWS)
    return pa.table(
        {
            "user_id": pa.array(keys),
            "event_timestamp": pa.array(T0 + day * DAY + rng.integers(0, HOUR, ROWS), TS),
            "created_timestamp": pa.array(np.full(ROWS, T0), TS),
            "x": pa.array(rng.random(ROWS)),
            "tag": pa.array(np.char.add("t", (keys % 13).astype(str))),
        },
        schema=SCHEMA,
    )


@pytest.fixture
def two_files(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A store of view `v` with two days, one Parquet file each (closed; reopen to read)."""
    rng = np.random.default_rng(3)
    off = OfflineStore(tmp_path, options())
    off.register_view("v", SCHEMA, ["user_id"])
    for day in range(2):
        off.append("v", _batch(day, rng), day + 1)
        off.flush()
    off.close()
    files = sorted((tmp_path / "offline" / "v").rglob("*.parquet"))
    assert len(files) == 2
    return tmp_path, files


def _column_chunk(path: Path, column: str) -> tuple[int, int]:
    """(first data page offset, compressed size) of `column` in row group 0."""
    meta = pq.read_metadata(path)
    for i in range(meta.num_columns):
        chunk = meta.row_group(0).column(i)
        if chunk.path_in_schema == column:
            start = chunk.dictionary_page_offset or chunk.data_page_offset
            return start, chunk.total_compressed_size
    raise AssertionError(column)


def _garble(path: Path, at: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(data)


def _reads(off: OfflineStore, out: Path) -> dict:
    ents = pa.table(
        {
            "user_id": pa.array([1, 2], pa.int64()),
            "event_timestamp": pa.array([T0 + 3 * DAY] * 2, TS),
        }
    )
    q = [FeatureQuery("v", ["x", "tag"], ["user_id"])]
    return {
        "scan": lambda: off.scan("v").read_all(),
        "latest_per_entity": lambda: off.latest_per_entity("v"),
        "get_historical": lambda: off.get_historical(ents, q),
        "export": lambda: off.export(ents, q, out),
    }


def test_damaged_compressed_data_is_corruption_naming_the_file(two_files, tmp_path) -> None:
    root, files = two_files
    victim = files[1]
    at, size = _column_chunk(victim, "x")
    _garble(victim, at + size // 2, b"\xa5" * 1024)
    off = OfflineStore(root, options())
    try:
        for name, read in _reads(off, tmp_path / "out.parquet").items():
            with pytest.raises(OfflineCorruptionError) as info:
                read()
            assert info.value.path == str(victim), name
            assert str(victim) in str(info.value), name
    finally:
        off.close()
    assert not (tmp_path / "out.parquet").exists()


def test_a_garbled_page_header_is_named_although_duckdb_names_no_file(two_files) -> None:
    root, files = two_files
    victim = files[0]
    at, _ = _column_chunk(victim, "x")
    _garble(victim, at, b"\xff" * 16)  # a thrift varint over 10 bytes
    off = OfflineStore(root, options())
    try:
        with pytest.raises(OfflineCorruptionError) as info:
            off.latest_per_entity("v")
        assert info.value.path == str(victim)
        assert "damaged" in str(info.value) and files[1].name not in str(info.value)
    finally:
        off.close()


def test_search_checks_footers_then_decodes_within_its_budget(two_files) -> None:
    _, files = two_files
    good = [Candidate(f, pq.read_metadata(f).num_rows, f.stat().st_size) for f in files]
    assert find_damaged(good) is None
    at, size = _column_chunk(files[1], "x")
    _garble(files[1], at + size // 2, b"\xa5" * 1024)
    assert find_damaged(good)[0] == files[1]
    assert find_damaged(good, budget_s=-1.0) is None  # no time to decode: not found
    wrong_rows = [Candidate(files[0], 1, None)]
    assert "rows" in find_damaged(wrong_rows, budget_s=-1.0)[1]  # footers are always checked
    with open(files[0], "r+b") as f:
        f.truncate(files[0].stat().st_size - 100)
    assert find_damaged(good, budget_s=-1.0)[0] == files[0]


def test_errors_that_are_not_damage_search_nothing(two_files) -> None:
    _, files = two_files
    binder = duckdb.BinderException("Referenced column x not found")
    assert not could_be_damage(binder)
    bad = [Candidate(files[0], 1, None)]  # would be reported if searched
    err = query_error(binder, bad)
    assert type(err) is OfflineError
    assert isinstance(
        query_error(duckdb.InvalidInputException("boom"), bad), OfflineCorruptionError
    )
