"""On-demand views: definitions (parse, round trip, refusals naming view, feature and token),
online reads (request fields with the entities, statuses, errors) and training reads computed
by the same programs: online and export values are equal, floats bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from store import FeatureStore
from store.definitions import Definitions
from store.errors import DefinitionError, NotFoundError, ValidationError
from tests.definitions import definitions, view
from tests.store.conftest import open_store

T0 = pd.Timestamp("2025-01-01", tz="UTC")


def odv_defs(*features: dict[str, str], request: list | None = None) -> dict[str, Any]:
    defs = definitions(
        view("user_profile", ["user"], {"age": "int64", "avg": "float64", "country": "string"}),
        view("item_stats", ["item"], {"price": "float32", "avg": "float64"}),
        services=None if features else {"risk_v1": ["txn_risk:amount_vs_avg", "user_profile:age"]},
    )
    defs["on_demand_views"] = [
        {
            "name": "txn_risk",
            "sources": ["user_profile", "item_stats"],
            "request": request if request is not None else [{"name": "amount", "dtype": "float64"}],
            "features": list(features)
            or [
                {
                    "name": "amount_vs_avg",
                    "dtype": "float64",
                    "expr": "amount / nullif(user_profile.avg, 0)",
                },
                {"name": "minor", "dtype": "bool", "expr": "coalesce(age, 0) < 18"},
                {
                    "name": "label",
                    "dtype": "string",
                    "expr": "case when country = 'FI' then 'fi' end",
                },
            ],
        }
    ]
    return defs


@pytest.fixture
def fs(tmp_path):
    store = open_store(tmp_path / "root")
    store.apply(odv_defs())
    store.ingest(
        "user_profile",
        {
            "user_id": [7, 8, 10],
            "event_timestamp": [T0] * 3,
            "age": [30, None, 12],
            "avg": [60.0, 0.0, 3.0],
            "country": ["SE", "FI", None],
        },
    )
    store.ingest(
        "item_stats", {"item_id": ["a"], "event_timestamp": [T0], "price": [2.5], "avg": [1.0]}
    )
    yield store
    store.close()


# ----------------------------------------------------------------------------- definitions


def test_definitions_round_trip_and_survive_reopen(fs: FeatureStore) -> None:
    d = Definitions.from_dict(odv_defs())
    assert Definitions.from_dict(d.to_dict()) == d
    shown = fs.definitions()["on_demand_views"]
    assert shown == odv_defs()["on_demand_views"]
    root = fs.root
    fs.close()
    with open_store(root) as again:
        assert again.definitions()["on_demand_views"] == shown
        r = again.get_online_features(["txn_risk:minor"], {"user_id": [10], "amount": [1.0]})
        assert r.to_dict()["minor"] == [True]


def test_apply_reports_on_demand_changes(fs: FeatureStore) -> None:
    defs = odv_defs({"name": "double", "dtype": "float64", "expr": "amount * 2"})
    assert fs.apply(defs)["on_demand_views"] == {
        "added": [],
        "removed": [],
        "modified": ["txn_risk"],
    }
    assert fs.apply(defs)["changed"] is False


@pytest.mark.parametrize(
    ("feature", "words"),
    [
        (
            {"name": "f", "dtype": "float64", "expr": "amount / nope"},
            ["'txn_risk'", "'f'", "'nope' at position 9", "unknown name"],
        ),
        (
            {"name": "f", "dtype": "float64", "expr": "avg"},
            ["'f'", "ambiguous", "'avg' at position 0"],
        ),
        (
            {"name": "f", "dtype": "bool", "expr": "country + 1"},
            ["'f'", "'+' at position 8", "takes numbers"],
        ),
        ({"name": "f", "dtype": "int64", "expr": "amount"}, ["'f'", "gives float"]),
        (
            {"name": "f", "dtype": "float64", "expr": "amount +"},
            ["'f'", "at the end of the expression"],
        ),
        ({"name": "f", "dtype": "timestamp", "expr": "amount"}, ["'f'", "dtype must be one of"]),
        ({"name": "f", "dtype": "float64"}, ["missing field 'expr'"]),
    ],
)
def test_bad_expressions_are_refused_naming_view_feature_and_token(
    tmp_path, feature: dict, words: list[str]
) -> None:
    with open_store(tmp_path / "r") as store, pytest.raises(DefinitionError) as e:
        store.apply(odv_defs(feature))
    for w in words:
        assert w in str(e.value), str(e.value)
    with open_store(tmp_path / "r") as store:  # nothing was applied
        assert store.definitions()["feature_views"] == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda o: o.update(sources=["nope"]), "unknown source feature view 'nope'"),
        (lambda o: o.update(name="user_profile"), "a feature view has the same name"),
        (lambda o: o.update(request=[{"name": "a", "dtype": "float16"}]), "dtype must be one of"),
        (lambda o: o.update(sources=[], request=[]), "at least one source view or request field"),
        (lambda o: o.update(extra=1), "unknown field(s) ['extra']"),
    ],
)
def test_malformed_on_demand_views_are_refused(tmp_path, change, words: str) -> None:
    defs = odv_defs()
    change(defs["on_demand_views"][0])
    with pytest.raises(DefinitionError, match=None) as e:
        Definitions.from_dict(defs)
    assert words in str(e.value)


# ----------------------------------------------------------------------------- online


def test_online_values_and_statuses(fs: FeatureStore) -> None:
    r = fs.get_online_features(
        ["txn_risk:amount_vs_avg", "user_profile:age", "txn_risk:minor", "txn_risk:label"],
        {"user_id": [7, 8, 9], "item_id": ["a", "a", "b"], "amount": [120.0, 5.0, None]},
    )
    # feature-view features first, then on-demand ones (each in request order)
    assert list(r.to_dict()) == ["user_id", "age", "amount_vs_avg", "minor", "label"]
    assert r.to_dict()["amount_vs_avg"] == [2.0, None, None]
    assert r.to_dict()["minor"] == [False, True, True]  # entity 9 not found: coalesce(null, 0)
    assert r.to_dict()["label"] == [None, "fi", None]
    assert r.statuses["amount_vs_avg"] == ["PRESENT", "NULL_VALUE", "NULL_VALUE"]
    assert r.statuses["minor"] == ["PRESENT"] * 3
    assert r.statuses["age"] == ["PRESENT", "NULL_VALUE", "NOT_FOUND"]
    table = r.to_arrow()
    assert table.column("amount_vs_avg").to_pylist() == [2.0, None, None]
    assert str(table.schema.field("label").type) == "string"


def test_request_fields_come_as_rows_too_and_full_names_prefix_the_view(fs: FeatureStore) -> None:
    r = fs.get_online_features(
        ["txn_risk:amount_vs_avg"], [{"user_id": 7, "amount": 30}], full_feature_names=True
    )
    assert r.to_dict() == {"user_id": [7], "txn_risk__amount_vs_avg": [0.5]}


def test_feature_services_serve_on_demand_features(fs: FeatureStore) -> None:
    r = fs.get_online_features("risk_v1", {"user_id": [7], "amount": [6.0]})
    assert r.to_dict() == {"user_id": [7], "age": [30], "amount_vs_avg": [0.1]}


@pytest.mark.parametrize(
    ("entities", "words"),
    [
        ({"user_id": [7]}, "request field 'amount' is missing"),
        ([{"user_id": 7}], "lacks request field 'amount'"),
        ({"user_id": [7], "amount": ["x"]}, "row 0: 'x' is not a float64"),
        ({"user_id": [7], "amount": [True]}, "is not a float64"),
        ({"user_id": [7], "amount": [1.0, 2.0]}, "has 2 value(s); the entities have 1"),
        ({"user_id": [7], "amount": 1.0}, "must be a list"),
    ],
)
def test_bad_request_fields_are_refused_naming_them(fs: FeatureStore, entities, words) -> None:
    with pytest.raises(ValidationError) as e:
        fs.get_online_features(["txn_risk:amount_vs_avg"], entities)
    assert words in str(e.value)
    assert e.value.column == "amount"


def test_one_entity_requests_take_plain_values_and_refuse_as_batches_do(fs: FeatureStore) -> None:
    refs = ["txn_risk:amount_vs_avg", "txn_risk:minor", "txn_risk:label"]
    for amount in (120, 120.0, np.float64(120.0), None):  # an int or numpy value is a float64
        for ents in (
            {"user_id": [7], "item_id": ["a"], "amount": [amount]},
            {"user_id": np.array([7]), "item_id": ["a"], "amount": np.array([amount])},
            [{"user_id": 7, "item_id": "a", "amount": amount}],
        ):
            got = fs.get_online_features(refs, ents).to_dict()
            ratio = None if amount is None else 2.0
            assert got == {
                "user_id": [7],
                "amount_vs_avg": [ratio],
                "minor": [False],
                "label": [None],
            }
            assert type(got["minor"][0]) is bool
    for bad in ([2**63], ["x"], [True]):
        with pytest.raises(ValidationError):
            fs.get_online_features(refs, {"user_id": [7], "amount": bad})
    r = fs.get_online_features(refs, {"user_id": [8], "amount": [1.0]})
    assert r.statuses == {
        "amount_vs_avg": ["NULL_VALUE"],
        "minor": ["PRESENT"],
        "label": ["PRESENT"],
    }
    assert r.event_timestamps["minor"] == [pd.Timestamp(0, tz="UTC")]
    assert r.to_arrow().column("label").to_pylist() == ["fi"]


def test_unknown_on_demand_feature_is_not_found(fs: FeatureStore) -> None:
    with pytest.raises(NotFoundError, match="on-demand view 'txn_risk' has no feature 'nope'"):
        fs.get_online_features(["txn_risk:nope"], {"user_id": [7], "amount": [1.0]})


def test_request_only_views_take_their_row_count_from_the_request(tmp_path) -> None:
    defs = odv_defs({"name": "sq", "dtype": "float64", "expr": "amount * amount"})
    defs["on_demand_views"][0]["sources"] = []
    defs["feature_services"] = []
    with open_store(tmp_path / "r") as store:
        store.apply(defs)
        r = store.get_online_features(["txn_risk:sq"], {"amount": [2.0, None, 3]})
        assert r.to_dict() == {"sq": [4.0, None, 9.0]}
        ent = pd.DataFrame({"event_timestamp": [T0] * 2, "amount": [2.0, 3.0]})
        table = store.get_historical_features(ent, ["txn_risk:sq"])
        assert table.column("sq").to_pylist() == [4.0, 9.0]


# ----------------------------------------------------------------------------- training


def test_historical_and_export_compute_over_the_joined_rows(fs: FeatureStore, tmp_path) -> None:
    ent = pd.DataFrame(
        {
            "user_id": [7, 8, 9, 7],
            "event_timestamp": [T0 + pd.Timedelta("1h")] * 3 + [T0 - pd.Timedelta("1h")],
            "amount": [120, 5, None, 6],
        }
    )
    refs = ["txn_risk:amount_vs_avg", "user_profile:country", "txn_risk:minor"]
    table = fs.get_historical_features(ent, refs)
    assert table.column_names == [
        "user_id",
        "event_timestamp",
        "amount",
        "country",
        "amount_vs_avg",
        "minor",
    ]
    assert table.column("amount_vs_avg").to_pylist() == [2.0, None, None, None]  # 7 before T0
    assert table.column("minor").to_pylist() == [False, True, True, True]
    assert table.schema.metadata[b"rickhouse.seq"] == b"2"
    out = tmp_path / "x.parquet"
    info = fs.export_training(ent, refs, out, full_feature_names=True)
    assert info["rows"] == 4 and info["path"] == str(out)
    exported = pq.read_table(out)
    assert exported.column_names[-3:] == [
        "user_profile__country",
        "txn_risk__amount_vs_avg",
        "txn_risk__minor",
    ]
    assert exported.column("txn_risk__minor").to_pylist() == [False, True, True, True]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.parquet")]


def test_an_empty_entity_table_exports_the_schema(fs: FeatureStore, tmp_path) -> None:
    ent = pd.DataFrame(
        {
            "user_id": pd.Series([], dtype="int64"),
            "event_timestamp": pd.Series([], dtype="datetime64[ns, UTC]"),
            "amount": pd.Series([], dtype="float64"),
        }
    )
    info = fs.export_training(
        ent, ["txn_risk:amount_vs_avg", "txn_risk:label"], tmp_path / "e.parquet"
    )
    table = pq.read_table(info["path"])
    assert info["rows"] == 0 and table.num_rows == 0
    assert table.schema.field("amount_vs_avg").type == "double"
    assert table.schema.field("label").type == "string"


def test_export_without_a_request_column_is_refused_naming_it(fs: FeatureStore, tmp_path) -> None:
    ent = pd.DataFrame({"user_id": [7], "event_timestamp": [T0]})
    with pytest.raises(ValidationError, match="lack request field 'amount'"):
        fs.export_training(
            ent, ["txn_risk:minor", "txn_risk:amount_vs_avg"], tmp_path / "o.parquet"
        )


MATH = [
    {"name": "ratio", "dtype": "float64", "expr": "amount / nullif(user_profile.avg, 0)"},
    {
        "name": "logs",
        "dtype": "float64",
        "expr": "ln(abs(amount) + 1) * exp(-user_profile.avg / 7)",
    },
    {
        "name": "mix",
        "dtype": "float32",
        "expr": "greatest(amount, age, price) - least(amount, age)",
    },
    {"name": "flag", "dtype": "bool", "expr": "amount > user_profile.avg or country = 'c1'"},
    {"name": "pick", "dtype": "int64", "expr": "case when amount > 0 then age * 3 else -age end"},
]


def test_online_and_export_give_equal_values_bit_for_bit(tmp_path) -> None:
    rng = np.random.default_rng(7)
    n = 300
    with open_store(tmp_path / "r") as store:
        store.apply(odv_defs(*MATH))
        users = np.arange(n)
        store.ingest(
            "user_profile",
            {
                "user_id": users.tolist(),
                "event_timestamp": [T0] * n,
                "age": [None if v < 0 else int(v) for v in rng.integers(-10, 90, n)],
                "avg": [
                    float(v) if k else None
                    for v, k in zip(rng.normal(50, 30, n), rng.random(n) > 0.1, strict=True)
                ],
                "country": rng.choice(["c1", "c2"], n).tolist(),
            },
        )
        items = [f"i{k}" for k in range(20)]
        store.ingest(
            "item_stats",
            {
                "item_id": items,
                "event_timestamp": [T0] * 20,
                "price": rng.random(20).tolist(),
                "avg": [0.0] * 20,
            },
        )
        amount = [
            None if k < 0.1 else float(v)
            for v, k in zip(rng.normal(0, 100, n), rng.random(n), strict=True)
        ]
        user_ids = rng.integers(0, n + 30, n).tolist()  # some not found
        item_ids = rng.choice(items + ["nope"], n).tolist()
        names = [f"txn_risk:{f['name']}" for f in MATH]
        online = store.get_online_features(
            names, {"user_id": user_ids, "item_id": item_ids, "amount": amount}
        ).to_arrow()
        ent = pd.DataFrame(
            {
                "user_id": user_ids,
                "item_id": item_ids,
                "event_timestamp": [T0 + pd.Timedelta("1d")] * n,
                "amount": amount,
            }
        )
        store.export_training(ent, names, tmp_path / "e.parquet")
        exported = pq.read_table(tmp_path / "e.parquet")
        for f in MATH:
            a = online.column(f["name"]).to_numpy(zero_copy_only=False)
            b = exported.column(f["name"]).to_numpy(zero_copy_only=False)
            assert online.column(f["name"]).null_count == exported.column(f["name"]).null_count
            if f["dtype"].startswith("float"):
                assert a.dtype == b.dtype
                bits = np.int64 if a.dtype == np.float64 else np.int32
                same = (a.view(bits) == b.view(bits)) | (np.isnan(a) & np.isnan(b))
                assert same.all(), f["name"]
            else:
                assert (
                    online.column(f["name"]).to_pylist() == exported.column(f["name"]).to_pylist()
                )
        assert online.column("ratio").null_count > 0
        # one entity at a time takes the one-row path (Python values): the same values and types
        batch = store.get_online_features(
            names, {"user_id": user_ids, "item_id": item_ids, "amount": amount}
        )
        want, statuses = batch.to_dict(), batch.statuses
        for k in range(n):
            one = store.get_online_features(
                names, {"user_id": [user_ids[k]], "item_id": [item_ids[k]], "amount": [amount[k]]}
            )
            got = one.to_dict()
            for f in MATH:
                a, b = got[f["name"]][0], want[f["name"]][k]
                assert type(a) is type(b), (f["name"], k, a, b)
                assert a == b or (a != a and b != b), (f["name"], k, a, b)
                assert one.statuses[f["name"]] == [statuses[f["name"]][k]]
            assert one.to_arrow().equals(online.slice(k, 1))


def test_aggregates_are_sources_like_any_feature(tmp_path) -> None:
    """An aggregation view's generated features (store/aggregations) feed expressions online and
    in an export alike, whether or not the request also reads them directly."""
    defs = definitions(view("user_profile", ["user"], {"age": "int64"}))
    defs["feature_views"].append(
        {
            "name": "user_txn",
            "entities": ["user"],
            "events": [{"name": "amount", "dtype": "float64"}],
            "aggregations": [
                {"column": "amount", "function": "mean", "windows": ["7d"]},
                {"column": "amount", "function": "sum", "windows": ["1d"]},
            ],
        }
    )
    defs["on_demand_views"] = [
        {
            "name": "txn_risk",
            "sources": ["user_txn", "user_profile"],
            "request": [{"name": "amount", "dtype": "float64"}],
            "features": [
                {
                    "name": "amount_vs_week",
                    "dtype": "float64",
                    "expr": "amount / nullif(amount_mean_7d, 0)",
                },
                {
                    "name": "big_spender",
                    "dtype": "bool",
                    "expr": "amount_sum_1d > 1000 or coalesce(age, 0) < 18",
                },
            ],
        }
    ]
    now = pd.Timestamp.now(tz="UTC").floor("s")
    hour = pd.Timedelta(hours=1)
    with open_store(tmp_path / "r") as store:
        store.apply(defs)
        store.ingest(
            "user_txn",
            {
                "user_id": [7, 7, 8],
                "event_timestamp": [now - 2 * hour, now - 72 * hour, now - hour],
                "amount": [100.0, 20.0, 2000.0],
            },
        )
        store.ingest("user_profile", {"user_id": [7], "event_timestamp": [now - hour], "age": [30]})
        ents = {"user_id": [7, 8, 9], "amount": [120.0, 1.0, 5.0]}
        odv = ["txn_risk:amount_vs_week", "txn_risk:big_spender"]
        alone = store.get_online_features(odv, ents).to_dict()
        assert alone == {
            "user_id": [7, 8, 9],
            "amount_vs_week": [2.0, 0.0005, None],
            "big_spender": [False, True, True],
        }
        both = store.get_online_features(["user_txn:amount_mean_7d", *odv], ents).to_dict()
        assert both == {**alone, "amount_mean_7d": [60.0, 2000.0, None]}
        ent = pd.DataFrame({**ents, "event_timestamp": [now] * 3})
        table = store.get_historical_features(ent, odv)
        assert table.column("amount_vs_week").to_pylist() == alone["amount_vs_week"]
        assert table.column("big_spender").to_pylist() == alone["big_spender"]
        for k in range(3):  # one entity at a time (the one-row path), with and without the view
            for refs in (odv, ["user_txn:amount_mean_7d", *odv]):
                one = {"user_id": [ents["user_id"][k]], "amount": [ents["amount"][k]]}
                got = store.get_online_features(refs, one).to_dict()
                assert got == {name: [vals[k]] for name, vals in both.items() if name in got}


def test_exports_of_latest_rows_refuse_on_demand_features(fs: FeatureStore, tmp_path) -> None:
    with pytest.raises(ValidationError, match="pass entities, not entities_as_of"):
        fs.export_training(
            features=["txn_risk:minor"], out_path=tmp_path / "x.parquet", entities_as_of=T0
        )


def test_first_row_equals_columns_of_row_0(tmp_path) -> None:
    """online.LookupResult.first_row, the one-row path's source decode: what columns gives."""
    feats = {"a": "int32", "b": "float32", "s": "string", "ok": "bool", "e": "float32[2]"}
    with open_store(tmp_path / "r") as store:
        store.apply(definitions(view("v", ["user"], feats)))
        store.ingest(
            "v",
            {
                "user_id": [1, 2],
                "event_timestamp": [T0] * 2,
                "a": [3, None],
                "b": [0.1, 2.5],
                "s": ["x", None],
                "ok": [True, None],
                "e": [[1.0, 2.0], None],
            },
        )
        names = tuple(feats)
        for user in (1, 2, 3):  # found, found with nulls, not found
            res = store.get_online_features([f"v:{f}" for f in feats], {"user_id": [user]})
            result = res.lookups[0].result
            want = [vals[0] for vals, _ in result.columns(names)]
            assert result.first_row(names) == want
            assert result.first_row(("b", "a")) == [want[1], want[0]]
