"""A hypothesis property: random batches sent to a single root and through a cluster's router
(P=4, two nodes, the Tansu broker) give equal `/get-online-features` answers (values, statuses,
event timestamps) and every tablet audits 0.

The batches mix late events, ties on event time (within and across batches), nulls, int, string
and composite keys, a `partition_by` view and a `replicate: all` view. One cluster and one root
serve the whole module; every example adds its batches to both, so the state they compare grows
from example to example. Bounded: ten examples, no deadline per example.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.broker import TestBroker
from cluster.topic import ensure_topic
from store import FeatureStore
from tests.cluster._equivalence import (
    IPC,
    assert_audits_clean,
    ipc,
    put_definitions,
    root_answer,
)
from tests.cluster._nodes import NodeProcess, write_config
from tests.cluster._router import RouterProcess, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

P = 4
NODES = [("a", "0-1"), ("b", "2-3")]
T0 = 1_735_689_600 * 10**9  # 2025-01-01, ns
TS = pa.timestamp("ns", "UTC")
USERS = [-3, 0, 1, 2, 7, 1 << 40]
ACCTS = ["a", "b", "é", "k 9", "0"]
DEFS: dict[str, Any] = {
    "entities": [
        {"name": "user", "join_keys": ["user_id"], "dtype": "int64"},
        {"name": "acct", "join_keys": ["acct_id"], "dtype": "string"},
    ],
    "feature_views": [
        {
            "name": "u",
            "entities": ["user"],
            "features": [
                {"name": "a", "dtype": "int64"},
                {"name": "f", "dtype": "float64"},
                {"name": "s", "dtype": "string"},
            ],
        },
        {"name": "k", "entities": ["acct"], "features": [{"name": "v", "dtype": "float64"}]},
        {"name": "c", "entities": ["user", "acct"], "features": [{"name": "n", "dtype": "int64"}]},
        {
            "name": "cp",
            "entities": ["user", "acct"],
            "features": [{"name": "m", "dtype": "string"}],
            "partition_by": "user",
        },
        {
            "name": "r",
            "entities": ["acct"],
            "features": [{"name": "p", "dtype": "float64"}],
            "replicate": "all",
        },
    ],
    "feature_services": [{"name": "all", "features": ["u", "k", "c", "cp", "r"]}],
}
KEYS = {"u": ["user_id"], "k": ["acct_id"], "c": ["user_id", "acct_id"]}
KEYS |= {"cp": ["user_id", "acct_id"], "r": ["acct_id"]}
FEATURES = {
    view["name"]: {f["name"]: f["dtype"] for f in view["features"]}
    for view in DEFS["feature_views"]
}
ARROW = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
VALUES = {
    "int64": st.integers(-(1 << 62), 1 << 62),
    "float64": st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
    "string": st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6),
}


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[str, pa.Table]]:
    """1-4 batches of random views: few keys (repeats), few event times (ties and late events)."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        view = draw(st.sampled_from(sorted(KEYS)))
        n = draw(st.integers(1, 10))
        cols: dict[str, pa.Array] = {}
        for key in KEYS[view]:
            if key == "user_id":
                cols[key] = pa.array(draw(st.lists(st.sampled_from(USERS), min_size=n, max_size=n)))
            else:
                cols[key] = pa.array(draw(st.lists(st.sampled_from(ACCTS), min_size=n, max_size=n)))
        for name, dtype in FEATURES[view].items():
            values = draw(st.lists(st.none() | VALUES[dtype], min_size=n, max_size=n))
            cols[name] = pa.array(values, ARROW[dtype])
        seconds = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
        cols["event_timestamp"] = pa.array([T0 + s * 10**9 for s in seconds], pa.int64()).cast(TS)
        out.append((view, pa.table(cols)))
    return out


def requests() -> list[dict[str, Any]]:
    """Every known key and a few never written, through the service and each placement alone."""
    users = [u for u in USERS for _ in ACCTS] + [5, 5]
    accts = ACCTS * len(USERS) + ["zz", "a"]
    return [
        {"feature_service": "all", "entities": {"user_id": users, "acct_id": accts}},
        {"features": ["u:a", "u:f", "u:s"], "entities": {"user_id": [*USERS, 4]}},
        {"features": ["r:p"], "entities": {"acct_id": [*ACCTS, "zz"]}},
        {"features": ["cp:m", "c:n"], "entities": {"user_id": users, "acct_id": accts}},
        {
            "features": ["cp:m", "u:s", "r:p"],
            "entities": {"user_id": [7] * 6, "acct_id": accts[:6]},
        },
    ]


@pytest.fixture(scope="module")
def pair(
    broker: TestBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RouterProcess, dict[str, NodeProcess], FeatureStore]]:
    """(the router of a started cluster, its nodes, a single root), all with DEFS applied."""
    tmp = tmp_path_factory.mktemp("equivalence")
    ensure_topic(broker.bootstrap_servers, "equivalence", P)
    config = write_config(tmp / "cluster.yaml", broker.bootstrap_servers, "equivalence", P, NODES)
    root = FeatureStore(tmp / "root")
    try:
        root.apply(DEFS)
        with running(config, tmp, [n for n, _ in NODES]) as (router, nodes):
            put_definitions(router, DEFS)
            yield router, nodes, root
    finally:
        root.close()


@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,  # the same examples every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(sent=batches())
def test_cluster_answers_as_one_root(
    pair: tuple[RouterProcess, dict[str, NodeProcess], FeatureStore],
    sent: list[tuple[str, pa.Table]],
) -> None:
    router, nodes, root = pair
    for view, table in sent:
        root.ingest(view, table)
        r = router.post(f"/v1/ingest/{view}", content=ipc(table), headers=IPC)
        assert r.status_code == 200, r.text
    for req in requests():
        got = router.post("/get-online-features", json=req)  # read-your-writes: no waiting
        assert got.status_code == 200, got.text
        assert got.json() == root_answer(root, req), req
    assert assert_audits_clean(nodes) == P
