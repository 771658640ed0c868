"""Aggregation views against a brute-force pandas oracle: online (T = the request time, injected
through read_online's `now_ns`), historical and export (T = each entity row's time), after
reopening (the online state rebuilt from the offline store), and as_of_seq."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import store.aggregations.events as agg_events
from store import DefinitionError
from store.definitions import Definitions
from store.online_read import read_online
from tests.store._aggregation_oracle import DAY, HOUR, MIN, T0, oracle, random_events, same
from tests.store.conftest import open_store

ENTITIES = [
    {"name": "user", "join_keys": ["user_id"]},
    {"name": "region", "join_keys": ["region"], "dtype": "string"},
]
EVENTS = [
    {"name": "amount", "dtype": "float64"},
    {"name": "merchant", "dtype": "string"},
    {"name": "qty", "dtype": "int64"},
]
AGGS = [
    {"column": "amount", "function": "sum", "windows": ["10m", "1h", "1d", "7d"]},
    {"column": "amount", "function": "count", "windows": ["1h", "7d"]},
    {"column": "amount", "function": "mean", "windows": ["1d"]},
    {"column": "amount", "function": "min", "windows": ["1h", "7d"]},
    {"column": "amount", "function": "max", "windows": ["1h", "7d"]},
    {"column": "amount", "function": "stddev", "windows": ["1d", "7d"]},
    {"column": "amount", "function": "last", "windows": ["1d"]},
    {"column": "merchant", "function": "last", "windows": ["1h", "7d"]},
    {"column": "merchant", "function": "count", "windows": ["1d"]},
    {"column": "merchant", "function": "min", "windows": ["7d"]},
    {"column": "merchant", "function": "max", "windows": ["7d"]},
    {"column": "qty", "function": "sum", "windows": ["1d"]},
    {"column": "qty", "function": "max", "windows": ["1d"]},
    {"column": "qty", "function": "min", "windows": ["1h"]},
    {"column": "qty", "function": "last", "windows": ["1d"]},
]
DEFS = {
    "entities": ENTITIES,
    "feature_views": [
        {"name": "txn", "entities": ["user"], "events": EVENTS, "aggregations": AGGS},
        {
            "name": "txn_hop",
            "entities": ["user", "region"],
            "events": EVENTS,
            "aggregations": AGGS,
            "hop": "5m",
        },
    ],
    "feature_services": [{"name": "txn_all", "features": ["txn:*"]}],
}
SPAN = 10 * DAY


@pytest.fixture(autouse=True)
def _keep_all_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Request times here lie in the past: keep every event in the online state."""
    monkeypatch.setattr(agg_events, "ONLINE_SLACK_NS", 400 * DAY)


def _ingest(fs, view: str, events: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Ingest `events` in 12 shuffled batches (late arrivals); returns them with seq and row."""
    keys = ["user_id"] if view == "txn" else ["user_id", "region"]
    perm = rng.permutation(len(events))
    done = []
    for part in np.array_split(perm, 12):
        b = events.iloc[part].reset_index(drop=True)
        data = {k: b[k].tolist() for k in keys}
        data["event_timestamp"] = pd.to_datetime(b["ts"], utc=True)
        data["created"] = pd.to_datetime(b["created"], utc=True)
        for c in ("amount", "merchant", "qty"):
            data[c] = b[c].tolist()
        seq = fs.ingest(view, pd.DataFrame(data).astype({"qty": "Int64", "amount": "Float64"}))
        done.append(b.assign(seq=seq, row=np.arange(len(b))))
    return pd.concat(done, ignore_index=True)


def _aggs(view: str):
    return Definitions.from_dict(DEFS).feature_views[view].aggregations


def _check(expected: dict, got: dict, what: str) -> None:
    for name, vals in expected.items():
        for i, (e, g) in enumerate(zip(vals, got[name], strict=True)):
            assert same(e, g), f"{what}: {name} row {i}: oracle {e!r} != {g!r}"


def _request_times(rng: np.random.Generator, events: pd.DataFrame) -> list[int]:
    """Random times plus window edges: event times, and event times + a window length."""
    ts = events["ts"].to_numpy()
    edges = [int(t) + w for t in rng.choice(ts, 6) for w in (0, 10 * MIN, HOUR, DAY)]
    return [*edges, *(T0 + rng.integers(-DAY, SPAN + 8 * DAY, 8)).tolist()]


@pytest.mark.parametrize("view", ["txn", "txn_hop"])
def test_online_and_export_equal_the_oracle(tmp_path, view: str) -> None:
    _oracle_round(tmp_path, view, 1500, 7 if view == "txn" else 8)


def test_colliding_hashed_keys_equal_the_oracle(tmp_path, tiny_hash_space) -> None:
    """4 hash buckets: composite keys collide and probe for their slots."""
    _oracle_round(tmp_path, "txn_hop", 600, 9)


def _oracle_round(tmp_path, view: str, n_events: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    events = _ingest(fs, view, random_events(rng, n_events, 25, SPAN), rng)
    keys = ["user_id"] if view == "txn" else ["user_id", "region"]
    aggs = _aggs(view)
    hop = 5 * MIN if view == "txn_hop" else 0
    refs = [f"{view}:{a.name}" for a in aggs]
    ents = pd.DataFrame({"user_id": list(range(27)), "region": ["eu", "us", "eu"] * 9})
    times = _request_times(rng, events)
    for reopen in (False, True):
        if reopen:  # the online state is rebuilt from the offline store
            fs.close()
            fs = open_store(tmp_path / "root")
        for t in times[:: 2 if reopen else 1]:
            res = read_online(fs._snap, refs, {k: ents[k].tolist() for k in keys}, False,
                              fs._keys.hash_bits, now_ns=t)  # fmt: skip
            exp = oracle(events, keys, ents.assign(t=t), aggs, hop)
            got = res.to_dict()
            _check(exp, got, f"online at {t}")
            counts = res.statuses[aggs[0].name]
            assert set(counts) <= {"PRESENT", "NULL_VALUE"}
    rows = ents.sample(200, replace=True, random_state=1).reset_index(drop=True)
    rows["t"] = rng.choice(times, len(rows))
    entity_df = rows[keys].assign(event_timestamp=pd.to_datetime(rows["t"], utc=True))
    hist = fs.get_historical_features(entity_df, refs).to_pylist()
    exp = oracle(events, keys, rows, aggs, hop)
    _check(exp, {n: [h[n] for h in hist] for n in exp}, "historical")
    out = tmp_path / "export.parquet"
    fs.export_training(entity_df, refs, out)
    exported = pd.read_parquet(out)
    assert list(exported.columns) == [*keys, "event_timestamp", *[a.name for a in aggs]]
    report = fs.audit()[view]
    assert report["mismatches"] == 0 and report["aggregate_rows"] > 0, report
    fs.close()


def test_audit_finds_an_online_aggregate_that_differs(tmp_path) -> None:
    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    t = T0 + DAY
    fs.ingest("txn", {"user_id": [1, 1, 2], "event_timestamp": pd.to_datetime([t - MIN, t, t], utc=True),
                      "amount": [1.0, 2.0, 3.0], "merchant": ["a", "b", "c"], "qty": [1, 2, 3]})  # fmt: skip
    assert fs.audit()["txn"]["mismatches"] == 0
    state = fs._snap.trees["txn"].events
    state._a.vals["amount"][0] = 1.5  # damage one online event value
    report = fs.audit()["txn"]
    assert report["aggregate_mismatches"] > 0
    assert any(e.get("feature", "").startswith("amount_") for e in report["examples"])
    fs.close()


def test_as_of_seq_reproduces_an_export_and_late_events_count(tmp_path) -> None:
    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    t = T0 + DAY
    ts = pd.to_datetime([t - 30 * MIN, t - 2 * HOUR], utc=True)
    first = fs.ingest("txn", {"user_id": [1, 1], "event_timestamp": ts, "amount": [1.0, 2.0],
                              "merchant": ["a", "b"], "qty": [1, 2]})  # fmt: skip
    ents = pd.DataFrame({"user_id": [1], "event_timestamp": pd.to_datetime([t], utc=True)})
    refs = ["txn:amount_sum_1h", "txn:amount_sum_1d", "txn:merchant_last_7d"]
    before = fs.get_historical_features(ents, refs)
    # a late event (older than both) and a tie at the window edge (exactly T - 1h: out)
    fs.ingest("txn", {"user_id": [1, 1], "event_timestamp": pd.to_datetime([t - 3 * HOUR, t - HOUR], utc=True),
                      "amount": [10.0, 100.0], "merchant": ["z", "y"], "qty": [0, 0]})  # fmt: skip
    after = fs.get_historical_features(ents, refs).to_pylist()[0]
    assert after["amount_sum_1h"] == 1.0 and after["amount_sum_1d"] == 113.0
    assert after["merchant_last_7d"] == "a"
    again = fs.get_historical_features(ents, refs, as_of_seq=first)
    assert again.to_pylist() == before.to_pylist()
    online = read_online(fs._snap, refs, {"user_id": [1]}, False, fs._keys.hash_bits, now_ns=t)
    assert online.to_dict()["amount_sum_1d"] == [113.0]
    fs.close()


def test_unknown_entity_reads_count_zero_and_nulls(tmp_path) -> None:
    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    res = fs.get_online_features("txn_all", {"user_id": [42]})
    d = res.to_dict()
    assert d["amount_count_7d"] == [0] and d["amount_sum_1d"] == [None]
    assert res.statuses["amount_count_7d"] == ["PRESENT"]
    assert res.statuses["amount_sum_1d"] == ["NULL_VALUE"]
    fs.close()


@pytest.mark.parametrize(
    "change, words",
    [
        ({"aggregations": [{"column": "nope", "function": "sum", "windows": ["1h"]}]}, ["txn", "nope"]),
        ({"aggregations": [{"column": "amount", "function": "median", "windows": ["1h"]}]}, ["txn", "median"]),
        ({"aggregations": [{"column": "merchant", "function": "sum", "windows": ["1h"]}]}, ["txn", "sum", "merchant"]),
        ({"aggregations": [{"column": "amount", "function": "sum", "windows": ["1 week"]}]}, ["txn", "1 week"]),
        ({"aggregations": [{"column": "amount", "function": "sum", "windows": ["0h"]}]}, ["txn", "0h"]),
        ({"aggregations": [{"column": "amount", "function": "sum", "windows": ["1h", "1h"]}]}, ["amount_sum_1h", "twice"]),
        ({"aggregations": []}, ["txn", "aggregations"]),
        ({"hop": "2h"}, ["txn", "hop", "amount_sum_10m"]),
        ({"hop": "soon"}, ["txn", "hop", "soon"]),
        ({"features": EVENTS}, ["txn", "features", "events"]),
        ({"events": [{"name": "v", "dtype": "float32[4]"}]}, ["txn", "v", "float32[4]"]),
        ({"aggregations": [{"column": "amount", "function": "sum", "windows": ["1h"], "extra": 1}]}, ["txn", "extra"]),
    ],
)  # fmt: skip
def test_bad_definitions_are_refused_naming_view_field_and_token(change, words) -> None:
    v = {"name": "txn", "entities": ["user"], "events": EVENTS, "aggregations": AGGS, **change}
    with pytest.raises(DefinitionError) as e:
        Definitions.from_dict({"entities": ENTITIES, "feature_views": [v]})
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_definitions_round_trip_and_generated_features() -> None:
    defs = Definitions.from_dict(DEFS)
    assert Definitions.from_dict(defs.to_dict()) == defs
    view = defs.feature_views["txn_hop"]
    assert view.hop_ns == 5 * MIN and view.is_aggregation
    served = {f.name: f.dtype for f in view.served_features}
    assert served["amount_sum_10m"] == "float64" and served["amount_count_7d"] == "int64"
    assert served["merchant_last_7d"] == "string" and served["qty_max_1d"] == "int64"
    assert served["qty_sum_1d"] == "float64"
    assert defs.feature_services["txn_all"].features[0] == "txn:amount_sum_10m"


def test_online_state_drops_events_past_retention_and_stays_exact(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(agg_events, "ONLINE_SLACK_NS", HOUR)
    monkeypatch.setattr(agg_events, "COMPACT_MIN_EVENTS", 64)
    monkeypatch.setattr(agg_events, "MIN_CAPACITY", 64)
    rng = np.random.default_rng(3)
    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    ev = random_events(rng, 3000, 6, 40 * DAY)
    ev = ev.sort_values("ts", kind="stable").reset_index(drop=True)  # mostly in time order
    done = []
    for part in np.array_split(np.arange(len(ev)), 30):
        b = ev.iloc[part].reset_index(drop=True)
        data = {"user_id": b["user_id"].tolist(), "event_timestamp": pd.to_datetime(b["ts"], utc=True),
                "created": pd.to_datetime(b["created"], utc=True), "amount": b["amount"].tolist(),
                "merchant": b["merchant"].tolist(), "qty": b["qty"].tolist()}  # fmt: skip
        seq = fs.ingest("txn", pd.DataFrame(data).astype({"qty": "Int64", "amount": "Float64"}))
        done.append(b.assign(seq=seq, row=np.arange(len(b))))
    events = pd.concat(done, ignore_index=True)
    state = fs._snap.trees["txn"].events
    assert state.n < len(events) / 2, state.stats()  # compacted: older events left the state
    aggs, refs = _aggs("txn"), [f"txn:{a.name}" for a in _aggs("txn")]
    ents = pd.DataFrame({"user_id": list(range(7))})
    newest = int(events["ts"].max())
    for t in (newest, newest - HOUR + 1, newest + 3 * DAY):
        got = read_online(fs._snap, refs, {"user_id": list(range(7))}, False, 0, now_ns=t)
        _check(oracle(events, ["user_id"], ents.assign(t=t), aggs, 0), got.to_dict(), f"at {t}")
    assert fs.audit()["txn"]["mismatches"] == 0
    fs.close()


@pytest.mark.parametrize("view", ["txn", "txn_hop"])
def test_deleted_entity_aggregates_are_empty_online_offline_and_after_reopen(
    tmp_path, view
) -> None:
    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    t = T0 + DAY
    keys = {"user_id": [1, 1, 2]} | ({"region": ["eu", "eu", "eu"]} if view == "txn_hop" else {})
    fs.ingest(view, {**keys, "event_timestamp": pd.to_datetime([t - MIN, t, t], utc=True),
                     "amount": [1.0, 2.0, 3.0], "merchant": ["a", "b", "c"], "qty": [1, 2, 3]})  # fmt: skip
    one = {k: v[:1] for k, v in keys.items()}
    two = {k: [v[2]] for k, v in keys.items()}
    fs.delete(view, one)
    refs = [f"{view}:amount_count_7d", f"{view}:amount_sum_1d"]
    for reopen in (False, True):
        if reopen:
            fs.close()
            fs = open_store(tmp_path / "root")
        got = read_online(fs._snap, refs, one, False, fs._keys.hash_bits, now_ns=t).to_dict()
        assert got["amount_count_7d"] == [0] and got["amount_sum_1d"] == [None]
        other = read_online(fs._snap, refs, two, False, fs._keys.hash_bits, now_ns=t).to_dict()
        assert other["amount_sum_1d"] == [3.0]
        ents = pd.DataFrame({**one, "event_timestamp": pd.to_datetime([t], utc=True)})
        assert fs.get_historical_features(ents, refs).to_pylist()[0]["amount_count_7d"] == 0
        assert fs.audit()[view]["mismatches"] == 0
    fs.close()


def test_apply_adding_an_aggregate_serves_it_from_the_events_already_held(tmp_path) -> None:
    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    t = T0 + DAY
    fs.ingest("txn", {"user_id": [1, 1], "event_timestamp": pd.to_datetime([t - 3 * DAY, t], utc=True),
                      "amount": [4.0, 6.0], "merchant": ["a", "b"], "qty": [1, 2]})  # fmt: skip
    more = {**DEFS, "feature_views": [
        {**DEFS["feature_views"][0],
         "aggregations": [*AGGS, {"column": "amount", "function": "sum", "windows": ["30d"]}]},
        DEFS["feature_views"][1],
    ]}  # fmt: skip
    fs.apply(more)
    refs = ["txn:amount_sum_30d", "txn:amount_sum_1d"]
    got = read_online(fs._snap, refs, {"user_id": [1]}, False, 0, now_ns=t).to_dict()
    assert got["amount_sum_30d"] == [10.0] and got["amount_sum_1d"] == [6.0]
    fs.ingest("txn", {"user_id": [1], "event_timestamp": pd.to_datetime([t], utc=True),
                      "amount": [1.0], "merchant": ["c"], "qty": [3]})  # fmt: skip
    got = read_online(fs._snap, refs, {"user_id": [1]}, False, 0, now_ns=t).to_dict()
    assert got["amount_sum_30d"] == [11.0]
    assert fs.audit()["txn"]["mismatches"] == 0
    fs.close()


def test_a_far_future_event_does_not_evict_the_present(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(agg_events, "ONLINE_SLACK_NS", HOUR)
    monkeypatch.setattr(agg_events, "COMPACT_MIN_EVENTS", 64)
    monkeypatch.setattr(agg_events, "MIN_CAPACITY", 64)
    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    now = time.time_ns()
    future = pd.to_datetime([now + 50 * 365 * DAY], utc=True)
    fs.ingest("txn", {"user_id": [2], "event_timestamp": future, "amount": [1.0],
                      "merchant": ["z"], "qty": [1]})  # fmt: skip
    for i in range(30):
        ts = pd.to_datetime(now - (np.arange(20) + 20 * i) * MIN, utc=True)
        fs.ingest("txn", {"user_id": [1] * 20, "event_timestamp": ts, "amount": [1.0] * 20,
                          "merchant": ["a"] * 20, "qty": [1] * 20})  # fmt: skip
    assert fs._snap.trees["txn"].events.stats()["events"] == 601
    got = read_online(fs._snap, ["txn:amount_count_7d"], {"user_id": [1]}, False, 0, now_ns=now)
    assert got.to_dict()["amount_count_7d"] == [600]
    fs.close()
