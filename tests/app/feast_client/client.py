"""Feast's own SDK against a rickhouse server: run by the Feast venv's python, not rickhouse's.

    .venv-feast/bin/python tests/app/feast_client/client.py --url http://127.0.0.1:PORT --repo DIR

Makes a Feast repo in DIR (feature_store.yaml from the template beside this file: remote online
store at --url, local file registry), applies definitions.py with FeatureStore.apply, then
writes, pushes and reads through feast.FeatureStore only, and prints one JSON object on the last
line of stdout: per step either {"ok": result} or {"raised": "module.Class", "message": ...}.
The pytest side (tests/app/test_feast_client.py) asserts on it; this script asserts nothing, so
every step runs and reports even when an earlier one failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from string import Template
from typing import Any

import feast
import pandas as pd
from definitions import objects  # beside this script: sys.path[0]
from feast import FeatureStore
from feast.data_source import PushMode

HERE = Path(__file__).resolve().parent
FEATURES = [f"user_stats:{f}" for f in ("ctr", "country", "visits", "premium", "emb", "seen")]
# Entities read back: written (100, 101), pushed (200, 201), ingested by rickhouse before the
# server started (1, tests/app/conftest.py USER_STATS), and one never written (999999).
READ_IDS = [100, 101, 200, 201, 1, 999_999]


def utc(*stamps: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(stamps), utc=True))


# write_to_online_store: two rows.
WRITTEN = pd.DataFrame(
    {
        "user_id": [100, 101],
        "ctr": pd.Series([0.125, 0.75], dtype="float32"),
        "country": ["SE", "NO"],
        "visits": [7, 8],
        "premium": [True, False],
        "emb": [[1.0, 0.5, 0.25], [0.0, -1.0, 2.0]],
        "seen": utc("2025-03-01T08:00:00Z", "2025-03-01T09:30:00Z"),
        "event_timestamp": utc("2025-03-01T10:00:00Z", "2025-03-01T10:00:01Z"),
    }
)
# push: two new entities (201 with null country and emb), a newer row for 100 (wins) and an
# older row for 101 (a late event: must not overwrite what was written).
PUSHED = pd.DataFrame(
    {
        "user_id": [200, 201, 100, 101],
        "ctr": pd.Series([0.5, -1.5, 0.0625, 0.875], dtype="float32"),
        "country": ["DE", None, "FI", "XX"],
        "visits": [1, 2, 70, 800],
        "premium": [False, True, False, True],
        "emb": [[3.0, 2.0, 1.0], None, [0.5, 0.5, 0.5], [9.0, 9.0, 9.0]],
        "seen": utc(
            "2025-03-02T00:00:00Z",
            "2025-03-02T00:00:01Z",
            "2025-03-02T12:00:00Z",
            "2025-02-01T00:00:00Z",
        ),
        "event_timestamp": utc(
            "2025-03-02T10:00:00Z",
            "2025-03-02T10:00:00Z",
            "2025-03-02T11:00:00Z",
            "2025-02-01T00:00:00Z",
        ),
    }
)


def make_repo(repo: Path, url: str) -> FeatureStore:
    """A Feast repo in `repo` pointing at the rickhouse server `url`, definitions applied."""
    repo.mkdir(parents=True, exist_ok=True)
    template = Template((HERE / "feature_store.yaml.template").read_text())
    yaml = template.substitute(registry_path=str(repo / "registry.db"), server_url=url)
    (repo / "feature_store.yaml").write_text(yaml)
    store = FeatureStore(repo_path=str(repo))
    store.apply(objects(repo))
    return store


def run(results: dict[str, Any], name: str, step: Callable[[], Any]) -> None:
    # Broad on purpose: what Feast raises is the result of an error step, and an unexpected
    # exception in any other step is reported (with its traceback) for the test to show.
    try:
        results[name] = {"ok": step()}
    except Exception as exc:  # noqa: BLE001
        results[name] = {
            "raised": f"{type(exc).__module__}.{type(exc).__name__}",
            "message": str(exc),
            "traceback": traceback.format_exc(limit=8),
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="rickhouse server, http://127.0.0.1:PORT")
    parser.add_argument("--repo", required=True, type=Path, help="an empty work directory")
    args = parser.parse_args()

    results: dict[str, Any] = {"feast_version": feast.__version__}
    store = make_repo(args.repo, args.url)
    rows = [{"user_id": i} for i in READ_IDS]
    one = [{"user_id": 100}]

    def read() -> dict[str, list]:
        return store.get_online_features(features=FEATURES, entity_rows=rows).to_dict()

    def read_full_names() -> dict[str, list]:
        response = store.get_online_features(
            features=["user_stats:visits"], entity_rows=one, full_feature_names=True
        )
        return response.to_dict()

    run(results, "write", lambda: store.write_to_online_store("user_stats", WRITTEN))
    run(results, "read_after_write", read)
    run(results, "push", lambda: store.push("user_stats_push", PUSHED, to=PushMode.ONLINE))
    run(results, "read", read)
    run(results, "read_full_names", read_full_names)
    run(
        results,
        "unknown_view",
        lambda: store.get_online_features(["nope:x"], one).to_dict(),
    )
    run(
        results,
        "unknown_feature",
        lambda: store.get_online_features(["user_stats:nope"], one).to_dict(),
    )
    # on-demand features (the server's `user_boost` view): request data travels in the entity
    # rows, and Feast's remote store sends it in "entities"
    run(
        results,
        "read_on_demand",
        lambda: store.get_online_features(
            ["user_boost:boosted_ctr", "user_boost:heavy"],
            [{"user_id": 100, "boost": 2.0}, {"user_id": 999_999, "boost": 1.0}],
        ).to_dict(),
    )
    run(
        results,
        "on_demand_missing_request",
        lambda: store.get_online_features(["user_boost:boosted_ctr"], one).to_dict(),
    )
    # aggregate features (the server's `user_txn` aggregation view), computed at read time
    run(
        results,
        "read_aggregates",
        lambda: store.get_online_features(
            ["user_txn:amount_sum_1d", "user_txn:amount_sum_7d", "user_txn:amount_count_7d"],
            [{"user_id": i} for i in (100, 1, 999_999)],
        ).to_dict(),
    )
    run(results, "write_unknown_view", lambda: store.write_to_online_store("nope", WRITTEN))
    run(results, "push_unknown_source", lambda: store.push("nope_push", PUSHED))
    asyncio.run(store.close())  # closes the remote store's pooled HTTP session
    sys.stdout.write("\n" + json.dumps(results, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
