"""GET /v1/offline/{view}/files and `rickhouse offline-files`: the listing of a view's published
Parquet files, its errors (404, 422; never 5xx), and the settings knob of the grace period."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.settings import Settings, SettingsError
from offline.snapshot_files import listing_schema
from tests.app.conftest import USER_STATS, make_client, make_root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("offline_files"))


def test_endpoint_lists_files_that_read_back_the_ingested_rows(root: Path) -> None:
    with make_client(root) as client:
        client.post("/v1/ingest/user_stats", json=USER_STATS)  # buffered: the listing flushes it
        r = client.get("/v1/offline/user_stats/files")
        assert r.status_code == 200, r.text
        listing = r.json()
        seq = client.get("/v1/stats").json()["last_seq"]
        early = client.get("/v1/offline/user_stats/files", params={"as_of_seq": 1}).json()
    assert listing["as_of_seq"] == seq and listing["complete_to_seq"] >= seq
    assert listing["row_filter"] == f"_seq <= {seq}"
    assert [c["name"] for c in listing["schema"]][-2:] == ["_seq", "_row"]
    paths = [f["path"] for f in listing["files"]]
    assert paths and all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    table = ds.dataset(paths, schema=listing_schema(listing)).to_table(
        filter=ds.field("_seq") <= seq
    )
    assert table.num_rows == 2 * len(USER_STATS["user_id"])  # make_root's batch and ours
    assert early["as_of_seq"] == 1 and early["row_filter"] == "_seq <= 1"


@pytest.mark.parametrize(
    "url, status",
    [
        ("/v1/offline/nope/files", 404),
        ("/v1/offline/user_stats/files?as_of_seq=-1", 422),
        ("/v1/offline/user_stats/files?as_of_seq=abc", 422),
        ("/v1/offline/user_stats/files?as_of_seq=999999", 422),
    ],
)
def test_endpoint_refuses_bad_requests_with_4xx(root: Path, url: str, status: int) -> None:
    with make_client(root) as client:
        r = client.get(url)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]


def test_cli_prints_the_listing_as_json_and_as_tables(root: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["offline-files", "user_item", "--root", str(root), "--as-of-seq", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert listing["view"] == "user_item" and listing["as_of_seq"] == 2
    assert listing["keys"] == ["user_id", "item_id"]
    result = runner.invoke(cli, ["offline-files", "user_item", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "row filter: _seq <=" in result.stdout and "nanosAsLong" in result.stdout
    result = runner.invoke(cli, ["offline-files", "nope", "--root", str(root)])
    assert result.exit_code == 1 and "nope" in result.output


def test_grace_period_setting_comes_from_the_environment() -> None:
    assert Settings.from_env({}).snapshot_grace_s == 3600
    assert Settings.from_env({"RICKHOUSE_SNAPSHOT_GRACE_S": "5"}).snapshot_grace_s == 5
    with pytest.raises(SettingsError, match="RICKHOUSE_SNAPSHOT_GRACE_S"):
        Settings.from_env({"RICKHOUSE_SNAPSHOT_GRACE_S": "-1"})
