"""`partition_by: <entity>` and `replicate: all`: their definitions (parsed, refused, round-tripped,
ignored by a single root, never changed by an apply) and, through a real cluster, the routing of
writes and reads by them (equal answers to a single root; a ranking read in one hop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest

from app.feast_json import feast_json
from app.node_server import JSON_OPTS, _columns_of, merge_feast_json
from cluster.broker import TestBroker
from cluster.partitioning import partition_of, routing_of
from cluster.scatter import Answer, merge, plan
from cluster.tablets import PINNED, TabletOptions, Tablets, group_views
from store import Definitions, FeatureStore
from store.errors import DefinitionError
from tests.cluster._equivalence import (
    IPC,
    assert_audits_clean,
    counted_read,
    ipc,
    put_definitions,
    root_answer,
)
from tests.cluster._nodes import write_config
from tests.cluster._router import running

T0 = 1_735_689_600  # 2025-01-01, epoch seconds

RANKING_DEFS: dict[str, Any] = {
    "entities": [
        {"name": "user", "join_keys": ["user_id"], "dtype": "int64"},
        {"name": "item", "join_keys": ["item_id"], "dtype": "string"},
    ],
    "feature_views": [
        {
            "name": "user_profile",
            "entities": ["user"],
            "features": [{"name": "age", "dtype": "int64"}],
        },
        {
            "name": "user_item",
            "entities": ["user", "item"],
            "features": [{"name": "clicks", "dtype": "int64"}],
            "partition_by": "user",
        },
        {
            "name": "item_info",
            "entities": ["item"],
            "features": [{"name": "price", "dtype": "float64"}],
            "replicate": "all",
        },
    ],
    "feature_services": [
        {"name": "ranking", "features": ["user_profile:age", "user_item:clicks", "item_info"]},
    ],
}


def _with_view(defs: dict[str, Any], name: str, **fields: Any) -> dict[str, Any]:
    """`defs` with view `name`'s fields updated (a None value removes the field)."""
    views = []
    for v in defs["feature_views"]:
        if v["name"] == name:
            v = {k: x for k, x in {**v, **fields}.items() if x is not None}
        views.append(v)
    return {**defs, "feature_views": views}


# ------------------------------------------------------------------------------ definitions


def test_fields_parse_and_round_trip() -> None:
    d = Definitions.load(RANKING_DEFS)
    assert d.feature_views["user_item"].partition_by == "user"
    assert not d.feature_views["user_item"].replicate
    assert d.feature_views["item_info"].replicate
    assert d.feature_views["item_info"].partition_by is None
    assert d.feature_views["user_profile"].partition_by is None
    out = {v["name"]: v for v in d.to_dict()["feature_views"]}
    assert out["user_item"]["partition_by"] == "user"
    assert out["item_info"]["replicate"] == "all"
    assert "partition_by" not in out["user_profile"] and "replicate" not in out["user_profile"]
    assert Definitions.from_dict(d.to_dict()) == d


def test_aggregation_view_accepts_partition_by() -> None:
    defs = {
        **RANKING_DEFS,
        "feature_views": [
            {
                "name": "user_item_events",
                "entities": ["user", "item"],
                "events": [{"name": "amount", "dtype": "float64"}],
                "aggregations": [{"column": "amount", "function": "sum", "windows": ["1h"]}],
                "partition_by": "user",
            }
        ],
        "feature_services": [],
    }
    d = Definitions.load(defs)
    view = d.feature_views["user_item_events"]
    assert view.is_aggregation and view.partition_by == "user"
    assert Definitions.from_dict(d.to_dict()) == d


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"partition_by": "shop"}, ["'user_item'", "'shop'", "not an entity of the view"]),
        ({"partition_by": 3}, ["'user_item'", "3", "not an entity"]),
        ({"replicate": "some"}, ["'user_item'", "'some'", "'all'"]),
        ({"replicate": True}, ["'user_item'", "True", "'all'"]),
        ({"replicate": "all"}, ["'user_item'", "both partition_by and replicate"]),
    ],
)
def test_bad_fields_are_refused_naming_view_and_value(
    fields: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(DefinitionError) as e:
        Definitions.load(_with_view(RANKING_DEFS, "user_item", **fields))
    for w in words:
        assert w in str(e.value), str(e.value)


def test_partition_by_an_entity_of_another_view_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"'user_profile'.*'item'.*not an entity"):
        Definitions.load(_with_view(RANKING_DEFS, "user_profile", partition_by="item"))


def test_single_entity_view_may_name_its_own_entity() -> None:
    d = Definitions.load(_with_view(RANKING_DEFS, "user_profile", partition_by="user"))
    assert d.feature_views["user_profile"].partition_by == "user"


def _ranking_rows(fs: FeatureStore) -> None:
    fs.ingest("user_profile", {"user_id": [1, 2], "age": [30, 40], "event_timestamp": [T0, T0]})
    fs.ingest(
        "user_item",
        {
            "user_id": [1, 1, 2],
            "item_id": ["a", "b", "a"],
            "clicks": [5, 6, 7],
            "event_timestamp": [T0, T0, T0],
        },
    )
    fs.ingest(
        "item_info", {"item_id": ["a", "b"], "price": [1.5, 2.5], "event_timestamp": [T0] * 2}
    )


def test_single_root_ignores_placement_and_round_trips_it(tmp_path: Path) -> None:
    plain = _with_view(
        _with_view(RANKING_DEFS, "user_item", partition_by=None), "item_info", replicate=None
    )
    answers = []
    for name, defs in (("placed", RANKING_DEFS), ("plain", plain)):
        fs = FeatureStore(tmp_path / name)
        try:
            fs.apply(defs)
            _ranking_rows(fs)
            res = fs.get_online_features(
                "ranking", {"user_id": [1, 1, 2, 3], "item_id": ["a", "b", "b", "a"]}
            )
            answers.append(res.to_dict())
        finally:
            fs.close()
    assert answers[0] == answers[1]
    fs = FeatureStore(tmp_path / "placed")  # reopened: the registry kept the fields
    try:
        views = fs.definitions()["feature_views"]
        assert {v["name"]: v.get("partition_by") for v in views}["user_item"] == "user"
        assert {v["name"]: v.get("replicate") for v in views}["item_info"] == "all"
    finally:
        fs.close()


@pytest.mark.parametrize(
    ("view", "fields", "words"),
    [
        ("user_item", {"partition_by": None}, "from partition_by: user to its join keys"),
        ("user_item", {"partition_by": "item"}, "from partition_by: user to partition_by: item"),
        ("item_info", {"replicate": None}, "from replicate: all to its join keys"),
        ("user_profile", {"replicate": "all"}, "from its join keys to replicate: all"),
    ],
)
def test_changing_placement_of_an_applied_view_is_refused(
    tmp_path: Path, view: str, fields: dict[str, Any], words: str
) -> None:
    fs = FeatureStore(tmp_path / "root")
    try:
        fs.apply(RANKING_DEFS)
        changed = _with_view(RANKING_DEFS, view, **fields)
        with pytest.raises(DefinitionError) as e:
            fs.apply(changed)  # refused even before any data: every tablet must decide alike
        assert f"feature view {view!r}" in str(e.value) and words in str(e.value)
        assert "force=True" in str(e.value)
        assert Definitions.from_dict(fs.definitions()) == Definitions.load(RANKING_DEFS)
        _ranking_rows(fs)
        changes = fs.apply(changed, force=True)  # forced: the view's data is dropped
        assert changes["dropped_data"] == [view]
        assert Definitions.from_dict(fs.definitions()) == Definitions.load(changed)
    finally:
        fs.close()


# ------------------------------------------------------------------------------ read plan


def test_read_plan_puts_a_ranking_request_in_one_group_on_one_partition() -> None:
    defs = Definitions.load(RANKING_DEFS).to_dict()
    entities = {"user_id": [7] * 20, "item_id": [f"i{k}" for k in range(20)]}
    groups = plan(defs, "ranking", entities, 8)
    assert [g.keys for g in groups] == [("user_id",)]
    assert len(set(groups[0].parts.tolist())) == 1
    assert group_views(defs, "ranking") == {
        ("user_id",): frozenset({"user_profile", "user_item", "item_info"})
    }


def test_read_plan_of_replicated_views_only_pins_one_partition() -> None:
    defs = Definitions.load(RANKING_DEFS).to_dict()
    entities = {"item_id": ["a", "b", "c"]}
    [g] = plan(defs, ["item_info:price"], entities, 8)
    p = partition_of("a", 8)
    assert g.keys == (f"{PINNED}{p}",) and g.parts.tolist() == [p] * 3
    [g] = plan(defs, ["item_info:price"], {"user_id": [1]}, 8)  # no item key: any node names it
    assert g.keys == ()


def test_read_plan_keeps_default_routing_of_a_composite_view() -> None:
    defs = Definitions.load(_with_view(RANKING_DEFS, "user_item", partition_by=None)).to_dict()
    groups = group_views(defs, "ranking")
    assert list(groups) == [("user_id",), ("user_id", "item_id")]
    assert groups[("user_id", "item_id")] == frozenset({"user_item", "item_info"})


# ------------------------------------------------------------------------------ a real cluster

P = 4
NODES = [("a", "0-1"), ("b", "2-3")]
USERS, ITEMS = 40, 24
TS = pa.timestamp("ns", "UTC")
CLUSTER_DEFS: dict[str, Any] = {
    **RANKING_DEFS,
    "feature_views": [
        *RANKING_DEFS["feature_views"],
        {  # the same composite view routed by its full join keys: another routing group
            "name": "user_item_plain",
            "entities": ["user", "item"],
            "features": [{"name": "views", "dtype": "int64"}],
        },
    ],
    "feature_services": [
        *RANKING_DEFS["feature_services"],
        {
            "name": "everything",
            "features": ["user_profile", "user_item", "item_info", "user_item_plain"],
        },
    ],
}


def _cluster_batches() -> list[tuple[str, pa.Table]]:
    """Seeded batches of every view: nulls, late events (older than what a key holds) and ties."""
    rng = np.random.default_rng(10)
    out: list[tuple[str, pa.Table]] = []

    def ts(base: int, n: int) -> pa.Array:
        return pa.array((T0 + base + rng.integers(0, 50, n)) * 10**9, pa.int64()).cast(TS)

    def nulls(values: np.ndarray) -> pa.Array:
        return pa.array(values.tolist(), mask=rng.random(len(values)) < 0.15)

    for round_, base in enumerate((1000, 0, 2000)):  # the second round is late
        users = rng.integers(0, USERS, 30)
        out.append(
            ("user_profile", pa.table({"user_id": pa.array(users, pa.int64()),
             "age": nulls(rng.integers(18, 90, 30)), "event_timestamp": ts(base, 30)}))
        )  # fmt: skip
        items = [f"i{k}" for k in rng.integers(0, ITEMS, 20)]
        out.append(
            ("item_info", pa.table({"item_id": items, "price": nulls(rng.random(20).round(3)),
             "event_timestamp": ts(base, 20)}))
        )  # fmt: skip
        for view, feature in (("user_item", "clicks"), ("user_item_plain", "views")):
            n = 120
            out.append(
                (view, pa.table({"user_id": pa.array(rng.integers(0, USERS, n), pa.int64()),
                 "item_id": [f"i{k}" for k in rng.integers(0, ITEMS, n)],
                 feature: nulls(rng.integers(0, 100, n)), "event_timestamp": ts(base, n)}))
            )  # fmt: skip
        del round_
    return out


def _cluster_requests() -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    items = [f"i{k}" for k in range(ITEMS)] + ["nope"]
    pairs_u = [int(u) for u in rng.integers(0, USERS + 3, 60)]  # some users never written
    pairs_i = [items[k] for k in rng.integers(0, len(items), 60)]
    return [
        {"feature_service": "ranking", "entities": {"user_id": [7] * len(items), "item_id": items}},
        {"feature_service": "everything", "entities": {"user_id": pairs_u, "item_id": pairs_i}},
        {
            "feature_service": "everything",
            "entities": {"user_id": pairs_u, "item_id": pairs_i},
            "full_feature_names": True,
        },
        {"features": ["item_info:price"], "entities": {"item_id": items}},
        {"features": ["user_item:clicks"], "entities": {"user_id": pairs_u, "item_id": pairs_i}},
        {
            "features": ["user_profile:age", "item_info:price"],
            "entities": {"user_id": pairs_u, "item_id": pairs_i},
        },
    ]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_cluster_answers_as_one_root_and_ranks_in_one_hop(
    broker: TestBroker, topic: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "cluster.yaml", broker.bootstrap_servers, topic, P, NODES)
    batches = _cluster_batches()
    oracle = FeatureStore(tmp_path / "oracle")
    try:
        oracle.apply(CLUSTER_DEFS)
        for view, table in batches:
            oracle.ingest(view, table)
        expected = [root_answer(oracle, r) for r in _cluster_requests()]
    finally:
        oracle.close()
    with running(config, tmp_path, [n for n, _ in NODES]) as (router, nodes):
        put_definitions(router, CLUSTER_DEFS)
        for view, table in batches:
            r = router.post(f"/v1/ingest/{view}", content=ipc(table), headers=IPC)
            assert r.status_code == 200, r.text
            if view == "item_info":  # replicated: the batch went to every partition
                assert sorted(r.json()["position"]) == [str(p) for p in range(P)], r.json()
        for req, want in zip(_cluster_requests(), expected, strict=True):
            got = router.post("/get-online-features", json=req)
            assert got.status_code == 200, got.text
            assert got.json() == want, req
        # each node answers for its own partitions only, so equal answers put every row of a
        # partition_by view beside its entity and every replicated row in every partition
        assert assert_audits_clean(nodes) == P

        ranking = _cluster_requests()[0]
        answer, calls = counted_read(config, ranking)
        assert answer == expected[0]
        owner = "a" if partition_of("7", P) in (0, 1) else "b"
        assert calls == [(owner, [partition_of("7", P)])], calls  # one node, one call

        only_replicated = _cluster_requests()[3]
        answer, calls = counted_read(config, only_replicated)
        assert answer == expected[3] and len(calls) == 1, calls

        changed = _with_view(CLUSTER_DEFS, "user_item", partition_by="item")
        r = router.put("/v1/definitions", json=changed)
        assert 400 <= r.status_code < 500, r.text
        assert "'user_item'" in r.text and "partition_by: item" in r.text, r.text
        r = router.put("/v1/definitions", json=_with_view(CLUSTER_DEFS, "item_info", replicate=1))
        assert 400 <= r.status_code < 500 and "replicate" in r.text, r.text
        got = router.get("/v1/definitions").json()
        assert Definitions.from_dict(got) == Definitions.load(CLUSTER_DEFS)  # round trip
        for n in nodes.values():
            assert Definitions.from_dict(n.get("/v1/definitions")) == Definitions.load(CLUSTER_DEFS)


# ------------------------------------------------------------------------------ in process


def _stamped(batches: list[tuple[str, pa.Table]]) -> list[tuple[str, pa.Table]]:
    """The batches with created_timestamp (as the router stamps it: increasing per batch)."""
    out = []
    for i, (view, t) in enumerate(batches):
        created = pa.array([(T0 + 10_000 + i) * 10**9] * t.num_rows, pa.int64()).cast(TS)
        out.append((view, t.append_column("created_timestamp", created)))
    return out


def test_tablets_answer_by_placement_as_one_root(tmp_path: Path) -> None:
    """A node holding all P tablets, fed each batch split by its view's Routing: direct reads,
    and reads scattered by the router's plan and merged, equal a single root's."""
    batches = _stamped(_cluster_batches())
    root = FeatureStore(tmp_path / "root")
    tablets = Tablets(tmp_path / "node", range(P), P, TabletOptions(background=False))
    try:
        root.apply(CLUSTER_DEFS)
        defs = Definitions.load(CLUSTER_DEFS)
        for fs in tablets.stores.values():
            fs.apply_at(1, CLUSTER_DEFS)
        for seq, (view, table) in enumerate(batches, start=2):
            root.ingest(view, table)
            routing = routing_of(defs.feature_views[view], defs.entities)
            for p, part in routing.split(table, P).items():
                tablets.stores[p].ingest_at(seq, view, part)
        ranking = _cluster_requests()[0]
        [one] = tablets.get_online_features("ranking", ranking["entities"])  # one tablet read
        assert one.rows.tolist() == list(range(ITEMS + 1)) and one.views is not None
        dicts = defs.to_dict()
        for req in _cluster_requests():
            want = root_answer(root, req)
            features = req.get("feature_service") or req["features"]
            ffn = req.get("full_feature_names", False)
            n = len(next(iter(req["entities"].values())))
            direct = tablets.get_online_features(features, req["entities"], ffn)
            assert _json(merge_feast_json(direct, n)) == want, req
            answers = []
            for g in plan(dicts, features, req["entities"], P):
                reads = tablets.get_online_features(features, req["entities"], ffn, g.keys)
                for read in reads:
                    body = orjson.dumps(feast_json(read.response), option=JSON_OPTS)
                    answers.append(Answer(read.rows, body, _columns_of(read)))
            assert _json(merge(answers, n)) == want, req
    finally:
        tablets.close()
        root.close()


def _json(obj: Any) -> Any:
    return orjson.loads(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY))


def test_single_root_rest_round_trips_and_refuses_a_change(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from app.server import create_app
    from app.settings import Settings

    with TestClient(create_app(Settings.from_env({}, root=tmp_path / "root"))) as client:
        r = client.put("/v1/definitions", json=RANKING_DEFS)
        assert r.status_code == 200, r.text
        got = client.get("/v1/definitions").json()
        assert Definitions.from_dict(got) == Definitions.load(RANKING_DEFS)
        r = client.put(
            "/v1/definitions", json=_with_view(RANKING_DEFS, "item_info", replicate=None)
        )
        assert r.status_code == 422 and "'item_info'" in r.text, r.text
        r = client.put(
            "/v1/definitions", json=_with_view(RANKING_DEFS, "user_item", partition_by="x")
        )
        assert r.status_code == 422 and "'user_item'" in r.text and "'x'" in r.text, r.text
