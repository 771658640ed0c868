"""OnlineResponse.to_dict and statuses against a straightforward reference built from the
engine's per-feature accessors (tests/app/test_feast_json.py reuses the data and the reference
for Feast's JSON).

Random data on a real store: every dtype, nulls, misses, rows older than the ttl, NaN/Inf in
floats and vectors, strings, timestamps of mixed precision; n = 1 and n = 100 (both decode paths).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.store.conftest import ns, open_store

HOUR = 3600 * 10**9
FEATURES = [
    ("i32", "int32"),
    ("i64", "int64"),
    ("f32", "float32"),
    ("f64", "float64"),
    ("flag", "bool"),
    ("name", "string"),
    ("seen", "timestamp"),
    ("emb", "float32[3]"),
]
DEFS = {
    "entities": [
        {"name": "user", "join_keys": ["user_id"], "dtype": "int64"},
        {"name": "item", "join_keys": ["item_id"], "dtype": "string"},
    ],
    "feature_views": [
        {
            "name": "u",
            "entities": ["user"],
            "ttl": "2h",
            "features": [{"name": n, "dtype": t} for n, t in FEATURES],
        },
        {
            "name": "it",
            "entities": ["item"],
            "features": [{"name": "price", "dtype": "float64"}, {"name": "tag", "dtype": "string"}],
        },
    ],
}
STATUS = np.array(["PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"], dtype=object)


# ---- the reference: per feature, numpy accessors, numpy RFC 3339 --------------------------------


def ref_columns(r):
    """Per feature (name, dtype, values with None, valid, statuses, event_ts ns) of a response."""
    out = []
    for lk in r.lookups:
        res = lk.result
        found = res.found
        live = found if lk.expired is None else found & ~lk.expired
        ev = np.where(found, res.event_ts, 0)
        for feat, name, dtype in zip(lk.read.features, lk.read.names, lk.read.dtypes, strict=True):
            valid = res.valid(feat) & live
            raw = res.values(feat)
            vals = raw.tolist()
            codes = np.where(found, 0, 2)
            if lk.expired is not None:
                codes[lk.expired] = 3
            codes[live & ~valid] = 1
            out.append((name, dtype, raw, vals, valid, STATUS[codes].tolist(), ev))
    return out


def ref_dict(r) -> dict:
    import pandas as pd

    out = {k: list(np.asarray(v).tolist()) for k, v in r.keys.items()}
    for name, dtype, _raw, vals, valid, _st, _ev in ref_columns(r):
        if dtype == "timestamp":
            vals = [pd.Timestamp(t, tz="UTC") for t in vals]
        out[name] = [v if ok else None for v, ok in zip(vals, valid.tolist(), strict=True)]
    return out


def same(a, b) -> bool:
    """Deep equality with Python types checked; NaN equals NaN."""
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return type(b) is list and len(a) == len(b) and all(map(same, a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


# ---- data -------------------------------------------------------------------------------------


def user_rows(rng: np.random.Generator, ids: np.ndarray, now: int) -> dict:
    n = len(ids)

    def nulls(vals: list) -> list:
        return [None if rng.random() < 0.2 else v for v in vals]

    f64 = rng.normal(size=n)
    f64[rng.random(n) < 0.15] = np.nan
    f64[rng.random(n) < 0.1] = np.inf
    f64[rng.random(n) < 0.1] = -np.inf
    emb = rng.normal(size=(n, 3)).astype(np.float32)
    emb[rng.random((n, 3)) < 0.05] = np.nan
    # event times: whole seconds, ms or ns; some older than the 2h ttl
    ev = now - rng.integers(0, 3 * HOUR, n) // 10**9 * 10**9
    ev = ev + rng.choice([0, 0, 0, 123_000_000, 7], size=n)
    seen = 1_700_000_000 * 10**9 + rng.integers(0, 10**6, n) * rng.choice([10**9, 10**6, 1], n)
    return {
        "user_id": ids.tolist(),
        "event_timestamp": ns(ev.tolist()),
        "i32": nulls(rng.integers(-(2**31), 2**31 - 1, n).tolist()),
        "i64": nulls(rng.integers(-(2**62), 2**62, n).tolist()),
        "f32": nulls(rng.normal(size=n).astype(np.float32).tolist()),
        "f64": nulls(f64.tolist()),
        "flag": nulls((rng.random(n) < 0.5).tolist()),
        "name": nulls([f"n{i}-ü" for i in ids.tolist()]),
        "seen": ns(nulls(seen.tolist())),
        "emb": nulls(emb.tolist()),
    }


@pytest.fixture
def store(tmp_path):
    import time

    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    rng = np.random.default_rng(42)
    now = time.time_ns()
    ids = np.arange(0, 400, 2)
    fs.ingest("u", user_rows(rng, ids[:120], now))
    fs.flush()  # half in sstables, half in the memtable
    fs.ingest("u", user_rows(rng, ids[120:], now))
    prices = rng.normal(size=60)
    prices[::7] = np.nan
    fs.ingest(
        "it",
        {
            "item_id": [f"i{k}" for k in range(60)],
            "event_timestamp": ns([now - 5 * 10**9] * 60),
            "price": [None if k % 5 == 0 else float(p) for k, p in enumerate(prices)],
            "tag": [None if k % 3 == 0 else f"t{k}" for k in range(60)],
        },
    )
    yield fs
    fs.close()


@pytest.mark.parametrize("n", [1, 3, 100])
def test_to_dict_equals_reference(store, n: int) -> None:
    rng = np.random.default_rng(n)
    feats = [f"u:{name}" for name, _ in FEATURES]
    for trial in range(40 if n < 100 else 8):
        ids = rng.integers(0, 500, n).tolist()  # odd ids and ids >= 400 miss
        picked = feats if trial % 3 else list(rng.permutation(feats)[: rng.integers(1, 8)])
        r = store.get_online_features(picked, {"user_id": ids})
        assert same(r.to_dict(), ref_dict(r)), (n, trial)
        assert [r.statuses[c] for c in r.feature_names] == [c[5] for c in ref_columns(r)]
        # two views, string keys, full names
        items = [f"i{k}" for k in rng.integers(0, 80, n).tolist()]
        r2 = store.get_online_features(
            ["it:price", "u:f64", "it:tag", "u:seen"],
            {"user_id": ids, "item_id": items},
            full_feature_names=True,
        )
        assert same(r2.to_dict(), ref_dict(r2))


def test_to_dict_returns_new_lists(store) -> None:
    """Mutating one output never changes another."""
    r = store.get_online_features(["u:f32", "u:name"], {"user_id": [0, 2]})
    d = r.to_dict()
    d["f32"][0] = "x"
    assert r.to_dict()["f32"][0] != "x"
