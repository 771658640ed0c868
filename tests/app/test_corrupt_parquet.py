"""A Parquet file damaged in the middle (a garbled page header: DuckDB's error names no file)
while the server runs: the training export and the audit answer 500 with a JSON body naming
the file and what to do; online reads go on being served."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.app.conftest import make_client, make_root

ONLINE = {"entities": {"user_id": [1]}, "features": ["user_stats:ctr"]}
EXPORT = {
    "entities": {"user_id": [1], "event_timestamp": ["2025-02-01T00:00:00Z"]},
    "features": ["user_stats:ctr"],
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    from store import FeatureStore

    root = make_root(tmp_path / "store")
    with FeatureStore(root) as fs:
        fs.flush()
    return root


def garble_page_header(path: Path, column: str) -> None:
    """Overwrite the first data page header of `column` (row group 0) with 0xff bytes."""
    meta = pq.read_metadata(path)
    for i in range(meta.num_columns):
        chunk = meta.row_group(0).column(i)
        if chunk.path_in_schema == column:
            with open(path, "r+b") as f:
                f.seek(chunk.data_page_offset)
                f.write(b"\xff" * 16)
            return
    raise AssertionError(column)


def assert_names_file(r, damaged: Path) -> None:  # noqa: ANN001
    assert r.status_code == 500 and r.headers["content-type"] == "application/json", r.text
    error = r.json()["error"]
    assert error["type"] == "CorruptionError"
    assert str(damaged) in error["message"] and "Restore" in error["message"]
    assert "Traceback" not in r.text


def test_a_parquet_file_damaged_in_the_middle_answers_500_naming_it(root: Path) -> None:
    with make_client(root) as c:
        assert c.post("/v1/training-export", json=EXPORT).status_code == 200
        # the day of user 1's row, which the export reads
        (damaged,) = (root / "offline" / "user_stats" / "date=2025-01-30").glob("*.parquet")
        size = damaged.stat().st_size
        garble_page_header(damaged, "event_timestamp")
        assert damaged.stat().st_size == size  # damaged, not truncated
        assert_names_file(c.post("/v1/training-export", json=EXPORT), damaged)
        assert_names_file(c.post("/v1/audit"), damaged)
        r = c.post("/get-online-features", json=ONLINE)
        assert r.status_code == 200 and r.json()["results"][1]["values"] == [0.25]
