"""DELETE /v1/entities/{view}, POST /v1/forget/{entity} and the `rickhouse delete` / `forget`
commands on a real store root."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from tests.app.conftest import make_client, make_root


@pytest.fixture()
def client(tmp_path: Path):
    with make_client(make_root(tmp_path / "root")) as c:
        yield c


def _online(client, features, entities) -> list:
    r = client.post("/get-online-features", json={"features": features, "entities": entities})
    assert r.status_code == 200, r.text
    out = r.json()
    return out["results"][out["metadata"]["feature_names"].index(features[0].split(":")[1])][
        "statuses"
    ]


def test_delete_endpoint_and_errors(client) -> None:
    r = client.request("DELETE", "/v1/entities/user_stats", json={"entities": {"user_id": [2]}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["deleted"] == 1 and body["seq"] > 0
    assert _online(client, ["user_stats:ctr"], {"user_id": [1, 2]}) == ["PRESENT", "NOT_FOUND"]
    r = client.request("DELETE", "/v1/entities/nope", json={"entities": {"user_id": [2]}})
    assert r.status_code == 404 and "nope" in r.text
    r = client.request("DELETE", "/v1/entities/user_stats", json={"keys": [2]})
    assert r.status_code == 422 and "entities" in r.text
    r = client.request("DELETE", "/v1/entities/user_stats", json={"entities": {"uid": [2]}})
    assert r.status_code == 422 and "uid" in r.text
    audit = client.post("/v1/audit").json()
    assert all(v["mismatches"] == 0 for v in audit.values())


def test_forget_endpoint_covers_composite_views(client) -> None:
    r = client.post("/v1/forget/user", json={"keys": [1]})
    assert r.status_code == 200, r.text
    assert r.json()["views"]["user_item"] == 2
    st = _online(client, ["user_item:clicks"], {"user_id": [1, 2], "item_id": ["a", "a"]})
    assert st == ["NOT_FOUND", "PRESENT"]
    assert client.post("/v1/forget/ghost", json={"keys": [1]}).status_code == 422
    assert client.post("/v1/forget/user", json={"keys": []}).status_code == 422


def test_cli_delete_and_forget(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    runner = CliRunner()
    out = runner.invoke(
        cli, ["delete", "user_stats", "--entity", "user_id=1,3", "--root", str(root)]
    )
    assert out.exit_code == 0, out.stdout
    assert "deleted 2 entities of user_stats" in out.stdout
    out = runner.invoke(cli, ["forget", "item", "a", "--root", str(root)])
    assert out.exit_code == 0, out.stdout
    assert "user_item: 2" in out.stdout
    out = runner.invoke(cli, ["delete", "user_stats", "--entity", "user_id", "--root", str(root)])
    assert out.exit_code == 1
