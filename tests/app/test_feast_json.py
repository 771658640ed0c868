"""app/feast_json.py: Feast's JSON (the serving fast path) against a straightforward reference
built from the engine's per-feature accessors, and rfc3339 against numpy.

The data and the per-feature reference are tests/store/test_online_response.py's: every dtype,
nulls, misses, rows older than the ttl, NaN/Inf in floats and vectors, strings, timestamps of
mixed precision; n = 1 and n = 100 (both decode paths).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.feast_json import EPOCH_RFC3339, feast_json, rfc3339
from tests.store.test_online_response import FEATURES, ref_columns, same
from tests.store.test_online_response import store as store  # noqa: F401 (the fixture)


def ref_rfc3339(ns) -> list[str]:
    ns = np.asarray(ns, dtype=np.int64)
    unit = "ns"
    for u, div in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if not (ns % div).any():
            unit = u
            break
    out = [s + "Z" for s in np.datetime_as_string(ns.astype("datetime64[ns]"), unit=unit)]
    if unit != "s":
        out = [EPOCH_RFC3339 if v == 0 else s for v, s in zip(ns.tolist(), out, strict=True)]
    return out


def ref_float(v):
    if isinstance(v, list):
        return [ref_float(x) for x in v]
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if v == math.inf:
        return "Infinity"
    if v == -math.inf:
        return "-Infinity"
    return v


def ref_feast(r) -> dict:
    n = r.n
    keys = {k: list(np.asarray(v).tolist()) for k, v in r.keys.items()}
    results = [
        {"values": v, "statuses": ["PRESENT"] * n, "event_timestamps": [EPOCH_RFC3339] * n}
        for v in keys.values()
    ]
    for _name, dtype, raw, vals, valid, statuses, ev in ref_columns(r):
        if dtype == "timestamp":  # epoch seconds, as Feast's server answers a UnixTimestamp
            vals = [int(t) // 10**9 if t % 10**9 == 0 else int(t) / 10**9 for t in raw.tolist()]
        elif dtype.startswith("float"):
            vals = [ref_float(v) for v in vals]
        vals = [v if ok else None for v, ok in zip(vals, valid.tolist(), strict=True)]
        results.append({"values": vals, "statuses": statuses, "event_timestamps": ref_rfc3339(ev)})
    names = [*keys, *(c[0] for c in ref_columns(r))]
    return {"metadata": {"feature_names": names}, "results": results}


@pytest.mark.parametrize("n", [1, 3, 100])
def test_fast_path_equals_reference(store, n: int) -> None:  # noqa: F811
    rng = np.random.default_rng(n)
    feats = [f"u:{name}" for name, _ in FEATURES]
    seen_statuses: set[str] = set()
    for trial in range(40 if n < 100 else 8):
        ids = rng.integers(0, 500, n).tolist()  # odd ids and ids >= 400 miss
        picked = feats if trial % 3 else list(rng.permutation(feats)[: rng.integers(1, 8)])
        r = store.get_online_features(picked, {"user_id": ids})
        body = feast_json(r)
        assert same(body, ref_feast(r)), (n, trial)
        assert same(feast_json(r), body)  # a second call gives the same
        for res in body["results"][1:]:
            seen_statuses.update(res["statuses"])
        # statuses (numpy path) agree with the JSON's
        assert [r.statuses[c] for c in r.feature_names] == [
            x["statuses"] for x in body["results"][1:]
        ]
        # two views, string keys, full names
        items = [f"i{k}" for k in rng.integers(0, 80, n).tolist()]
        r2 = store.get_online_features(
            ["it:price", "u:f64", "it:tag", "u:seen"],
            {"user_id": ids, "item_id": items},
            full_feature_names=True,
        )
        assert same(feast_json(r2), ref_feast(r2))
    if n == 100:
        assert seen_statuses == {"PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"}


def test_outputs_are_new_lists(store) -> None:  # noqa: F811
    """Mutating one output never changes another (the server adds to the metadata)."""
    r = store.get_online_features(["u:f32", "u:name"], {"user_id": [0, 2]})
    a = feast_json(r)
    a["metadata"]["feature_view_metadata"] = [{"name": "u"}]
    a["results"][1]["values"][0] = "x"
    a["results"][1]["statuses"][0] = "x"
    b = feast_json(r)
    assert "feature_view_metadata" not in b["metadata"]
    assert b["results"][1]["values"][0] != "x" and b["results"][1]["statuses"][0] == "PRESENT"
    d = r.to_dict()
    d["f32"][0] = "x"
    assert r.to_dict()["f32"][0] != "x"


@pytest.mark.parametrize("size", [1, 2, 5, 40, 200])
def test_rfc3339_equals_numpy(size: int) -> None:
    rng = np.random.default_rng(size)
    for scale in (10**9, 10**6, 10**3, 1):
        for _ in range(20):
            ns = rng.integers(-(2**62), 2**62, size) // scale * scale
            ns[rng.random(size) < 0.2] = 0
            if size > 2:
                ns[1] = ns[2]  # repeated values
            assert rfc3339(ns) == ref_rfc3339(ns)
            assert rfc3339(ns.tolist()) == ref_rfc3339(ns)
    edge = np.array([0, -1, 1, -(2**63), 2**63 - 1, 10**9, -(10**9), 1_500], dtype=np.int64)
    for i in range(len(edge)):
        for j in range(i, len(edge) + 1):
            assert rfc3339(edge[i:j]) == ref_rfc3339(edge[i:j])
    assert rfc3339([0]) == [EPOCH_RFC3339] and rfc3339([]) == []
