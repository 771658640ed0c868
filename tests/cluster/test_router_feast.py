"""Feast's own SDK (remote online store) against `rickhouse router`: the Feast SDK test of
tests/app/test_feast_client.py, with the router of a 2-node cluster in place of `rickhouse serve`.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from cluster.broker import TestBroker
from tests.app.conftest import DEFS, STALE, USER_ITEM, USER_STATS
from tests.app.test_feast_client import (
    EXPECTED,
    EXPECTED_AFTER_WRITE,
    FEAST_PYTHON,
    USER_BOOST,
    ok,
    run_feast_client,
)
from tests.cluster._nodes import write_config
from tests.cluster._router import running

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def test_feast_sdk_reads_and_writes_through_the_router(
    broker: TestBroker, topic: str, tmp_path: Path
) -> None:
    if not FEAST_PYTHON.exists():
        pytest.fail(f"{FEAST_PYTHON} is missing: `make test` installs Feast there")
    config = write_config(
        tmp_path / "cluster.yaml", broker.bootstrap_servers, topic, 4, [("a", "0-1"), ("b", "2-3")]
    )
    with running(config, tmp_path, ["a", "b"]) as (router, _nodes):
        defs = {**DEFS, "on_demand_views": [USER_BOOST]}
        r = router.put("/v1/definitions", content=orjson.dumps(defs))
        assert r.status_code == 200, r.text
        for view, rows in (("user_stats", USER_STATS), ("user_item", USER_ITEM), ("stale", STALE)):
            r = router.post(f"/v1/ingest/{view}", content=orjson.dumps(rows))
            assert r.status_code == 200, r.text
        results = run_feast_client(router.url, tmp_path / "feast_repo")
    assert ok(results, "write") is None
    assert ok(results, "push") is None
    after_write = {k: v for k, v in ok(results, "read_after_write").items() if k != "seen"}
    assert after_write == EXPECTED_AFTER_WRITE
    read = {k: v for k, v in ok(results, "read").items() if k != "seen"}
    assert read == EXPECTED
    assert ok(results, "read_full_names") == {"user_id": [100], "user_stats__visits": [70]}
    assert results["unknown_view"]["raised"] == "feast.errors.FeatureViewNotFoundException"
    assert ok(results, "read_on_demand") == {
        "user_id": [100, 999_999],
        "boosted_ctr": [0.125, None],
        "heavy": [True, False],
    }
