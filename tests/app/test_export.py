"""app/export.py: parsing of /v1/training-export requests (JSON columns, Arrow bodies, Parquet
paths), path and name safety, and the errors, each naming the field; unit level, no server."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app import export
from app.errors import BadRequestError, NotFoundApiError
from app.payloads import key_dtypes
from app.service import DefinitionsSnapshot
from store import Definitions
from store.errors import EntityKeyError, UnknownFeatureServiceError, UnknownViewError
from tests.app.conftest import DEFS, arrow_ipc

DEFINITIONS = Definitions.from_dict(DEFS)
SNAP = DefinitionsSnapshot(DEFINITIONS, key_dtypes(DEFINITIONS))
ENTS = {"user_id": [1, 2], "event_timestamp": ["2025-01-01T00:00:00Z", "2025-01-02"]}
ARROW = "application/vnd.apache.arrow.stream"


@pytest.mark.parametrize(
    "accept, output, mode",
    [
        ("", None, "file"),
        ("application/json", None, "file"),
        (ARROW, None, "arrow"),
        ("application/vnd.apache.parquet", None, "parquet"),
        ("application/octet-stream", None, "parquet"),
        ("", "stream", "parquet"),
        (ARROW, "file", "file"),
    ],
)
def test_mode_follows_accept_and_output(accept: str, output: str | None, mode: str) -> None:
    assert export.choose_mode(accept, output) == mode


def test_unknown_output_is_422() -> None:
    with pytest.raises(BadRequestError, match="'output'"):
        export.choose_mode("", "disk")


@pytest.mark.parametrize("value, expected", [(None, None), (0, 0), (7, 7), ("12", 12)])
def test_as_of_seq_takes_integers_and_ascii_digits(value: object, expected: int | None) -> None:
    assert export.parse_as_of_seq(value) == expected


@pytest.mark.parametrize("value", [-1, 1.5, True, "\u00b2", "1e3", "9" * 20, [1]])
def test_as_of_seq_refuses_anything_else(value: object) -> None:
    with pytest.raises(BadRequestError, match="as_of_seq"):
        export.parse_as_of_seq(value)


@pytest.mark.parametrize("name", ["../x.parquet", "/tmp/x.parquet", "x.csv", ".x.parquet", 5])
def test_out_names_are_plain_parquet_file_names(name: object) -> None:
    with pytest.raises(BadRequestError, match="plain file name"):
        export.check_out_name(name)
    assert export.check_out_name("train-1.parquet") == "train-1.parquet"


def test_entity_paths_stay_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    pq.write_table(pa.table({"user_id": [1]}), root / "e.parquet")
    (tmp_path / "out.parquet").write_bytes(b"")
    os.symlink(tmp_path / "out.parquet", root / "link.parquet")
    assert export.safe_entities_path("e.parquet", root) == str((root / "e.parquet").resolve())
    for path, fragment in (
        ("../out.parquet", "outside the store root"),
        ("link.parquet", "outside the store root"),
        ("registry.json", "not a .parquet file"),
        ("", "non-empty string"),
        ("a\x00.parquet", "non-empty string"),
    ):
        with pytest.raises(BadRequestError, match=fragment):
            export.safe_entities_path(path, root)
    with pytest.raises(NotFoundApiError, match="no such file"):
        export.safe_entities_path("none.parquet", root)


def test_json_columns_become_a_typed_entity_table() -> None:
    plan = export.resolve_features({"features": ["user_item:clicks"]}, SNAP)[1]
    table = export.entities_from_columns(
        {**ENTS, "item_id": [7, "b"], "label": [0.5, 1.5]}, plan, SNAP
    )
    assert table.schema.field("user_id").type == pa.int64()
    assert table.column("item_id").to_pylist() == ["7", "b"]  # Feast's wire form of string keys
    assert table.schema.field("event_timestamp").type == pa.timestamp("ns", tz="UTC")
    assert table.column("label").to_pylist() == [0.5, 1.5]


@pytest.mark.parametrize(
    "columns, error, fragment",
    [
        ({"user_id": [1], "event_timestamp": ["soon"]}, BadRequestError, "event_timestamp"),
        ({"user_id": [1], "event_timestamp": ["0001-01-01"]}, BadRequestError, "1677"),
        ({"user_id": [1], "event_timestamp": [5]}, BadRequestError, "row 0"),
        ({"user_id": ["x"], "event_timestamp": ["2025-01-01"]}, EntityKeyError, "row 0"),
        ({"item_id": ["a"], "event_timestamp": ["2025-01-01"]}, EntityKeyError, "user_id"),
        ({**ENTS, "label": [1, "a"]}, BadRequestError, "'label'"),
        ({"user_id": [1, 2], "event_timestamp": ["2025-01-01"]}, BadRequestError, "unequal"),
        ([1], BadRequestError, "JSON object of columns"),
    ],
)
def test_bad_json_columns_name_the_column(columns: object, error: type, fragment: str) -> None:
    plan = export.resolve_features({"features": ["user_stats:ctr"]}, SNAP)[1]
    with pytest.raises(error, match=fragment):
        export.entities_from_columns(columns, plan, SNAP)


def test_features_are_resolved_by_the_store_planner() -> None:
    features, plan = export.resolve_features({"feature_service": "ranking_v1"}, SNAP)
    assert features == "ranking_v1" and plan.refs == ("user_stats:ctr", "user_item:clicks")
    with pytest.raises(UnknownViewError, match="nope"):
        export.resolve_features({"features": ["nope:x"]}, SNAP)
    with pytest.raises(UnknownFeatureServiceError):
        export.resolve_features({"feature_service": "nope"}, SNAP)
    with pytest.raises(BadRequestError, match="view:feature"):
        export.resolve_features({"features": ["nocolon"]}, SNAP)


def test_json_request(tmp_path: Path) -> None:
    req = export.parse_json_request(
        {"entities": ENTS, "features": ["user_stats:ctr"], "as_of_seq": 2, "out": "t.parquet"},
        "",
        SNAP,
        tmp_path,
    )
    assert isinstance(req.entities, pa.Table) and req.entities.num_rows == 2
    assert (req.features, req.as_of_seq, req.mode, req.out_name) == (
        ["user_stats:ctr"],
        2,
        "file",
        "t.parquet",
    )
    with pytest.raises(BadRequestError, match="exactly one"):
        export.parse_json_request({"features": ["user_stats:ctr"]}, "", SNAP, tmp_path)
    with pytest.raises(BadRequestError, match="JSON object"):
        export.parse_json_request([1], "", SNAP, tmp_path)
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 junk PAR1")
    with pytest.raises(BadRequestError, match="not a readable Parquet file"):
        export.parse_json_request(
            {"entities_path": "junk.parquet", "features": ["user_stats:ctr"]}, "", SNAP, tmp_path
        )


def test_arrow_request() -> None:
    rows = pa.table({"user_id": [1], "event_timestamp": pa.array([0], pa.timestamp("s"))})
    params = {"features": ["user_stats:ctr,user_stats:visits"], "as_of_seq": "3"}
    req = export.parse_arrow_request(arrow_ipc(rows), params, ARROW, SNAP, 1 << 20)
    assert req.entities.equals(rows) and req.mode == "arrow" and req.as_of_seq == 3
    assert req.features == ["user_stats:ctr", "user_stats:visits"]
    with pytest.raises(BadRequestError, match="empty"):
        export.parse_arrow_request(arrow_ipc(rows.slice(0, 0)), params, "", SNAP, 1 << 20)
    with pytest.raises(BadRequestError, match="Arrow"):
        export.parse_arrow_request(b"junk", params, "", SNAP, 1 << 20)
    with pytest.raises(BadRequestError, match="features"):
        export.parse_arrow_request(arrow_ipc(rows), {}, "", SNAP, 1 << 20)


def test_an_export_name_is_taken_once(tmp_path: Path) -> None:
    class Store:
        root = tmp_path
        last_seq = 5

        def export_training(self, entities, features, out, as_of_seq=None):  # noqa: ANN001, ANN202
            Path(out).write_bytes(b"x")
            return {"seq": 5, "rows": 1, "path": out}

    req = export.ExportRequest(pa.table({}), ["user_stats:ctr"], None, "file", "a.parquet")
    info = export.run_export(Store(), req)  # type: ignore[arg-type]
    assert info == {"seq": 5, "rows": 1, "path": str(tmp_path / "exports" / "a.parquet")}
    with pytest.raises(export.ExportExistsError, match="already exists"):
        export.run_export(Store(), req)  # type: ignore[arg-type]
    ahead = export.ExportRequest(pa.table({}), ["user_stats:ctr"], 9, "file")
    with pytest.raises(BadRequestError, match="ahead"):
        export.run_export(Store(), ahead)  # type: ignore[arg-type]
