"""The audit itself: it must see every kind of disagreement between the two stores."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from store.audit import _hashed_pairs, _sorted_pairs
from store.audit import compare_tables as audit_view
from store.definitions import Definitions
from store.keys import ENTITY_KEY_FIELD, canonical_keys, int_to_key
from tests.store.conftest import DEFS

VIEWS = Definitions.from_dict(DEFS).feature_views
TS = pa.timestamp("ns", tz="UTC")


def _offline(ids, ctr) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "user_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array([10] * n, pa.int64()).cast(TS),
            "created_timestamp": pa.array([20] * n, pa.int64()).cast(TS),
            "_seq": pa.array([1] * n, pa.int64()),
            "ctr": pa.array(ctr, pa.float32()),
            "country": pa.array(["NL"] * n),
            "emb": pa.array([[1.0, 2.0, 3.0, 4.0]] * n, pa.list_(pa.float32(), 4)),
        }
    )


def _online(ids, ctr, seq=1) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "key": pa.array(int_to_key(pa.array(ids, pa.int64()).to_numpy()), pa.uint64()),
            "event_timestamp": pa.array([10] * n, pa.int64()).cast(TS),
            "created_timestamp": pa.array([20] * n, pa.int64()).cast(TS),
            "seq": pa.array([seq] * n, pa.int64()),
            "ctr": pa.array(ctr, pa.float32()),
            "country": pa.array(["NL"] * n, pa.large_string()),
            "emb": pa.array([[1.0, 2.0, 3.0, 4.0]] * n, pa.list_(pa.float32(), 4)),
        }
    )


def test_identical_sides_have_no_mismatch_nan_and_null_included() -> None:
    ctr = [0.5, float("nan"), None]
    report = audit_view(VIEWS["user_stats"], _offline([1, 2, 3], ctr), _online([1, 2, 3], ctr))
    assert report == {"entities": 3, "online_entities": 3, "mismatches": 0, "examples": []}


def test_every_kind_of_disagreement_is_counted_with_examples() -> None:
    view = VIEWS["user_stats"]
    off = _offline([1, 2, 3, 4], [0.1, 0.2, 0.3, None])
    on = _online([1, 2, 3, 5], [0.1, 0.25, 0.3, 0.5])
    report = audit_view(view, off, on)
    assert report["mismatches"] == 3  # 2 differs, 4 offline only, 5 online only
    problems = {(e["entity"], e["problem"]) for e in report["examples"]}
    assert problems == {(4, "offline only"), (5, "online only"), (2, "differs")}
    assert (
        audit_view(view, off.slice(0, 3), _online([1, 2, 3], [0.1, 0.2, 0.3], seq=2))["mismatches"]
        == 3
    )


def test_hashed_views_join_on_the_original_key_not_the_engine_key() -> None:
    view = VIEWS["item_stats"]
    canon = canonical_keys([["a", "b"]], ["string"])
    off = pa.table(
        {
            "item_id": ["a", "b"],
            "event_timestamp": pa.array([1, 1], pa.int64()).cast(TS),
            "created_timestamp": pa.array([1, 1], pa.int64()).cast(TS),
            "_seq": [1, 1],
            "price": [1.0, 2.0],
            "ctr": [None, 0.5],
        }
    )
    on = pa.table(
        {
            "key": pa.array(
                [7, 3], pa.uint64()
            ),  # any engine keys: the slots are an implementation detail
            "event_timestamp": pa.array([1, 1], pa.int64()).cast(TS),
            "created_timestamp": pa.array([1, 1], pa.int64()).cast(TS),
            "seq": [1, 1],
            ENTITY_KEY_FIELD: pa.array(canon.tolist(), pa.large_string()),
            "price": [1.0, 2.0],
            "ctr": [None, 0.5],
        }
    )
    assert audit_view(view, off, on)["mismatches"] == 0
    swapped = on.set_column(4, ENTITY_KEY_FIELD, pa.array(canon.tolist()[::-1], pa.large_string()))
    assert audit_view(view, off, swapped)["mismatches"] == 2


def test_arrow_built_canonical_keys_equal_the_ingest_path_ones() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from store.audit import _offline_key

    view = VIEWS["pair"]  # (user_id int64, item_id string)

    @given(
        st.lists(
            st.tuples(st.integers(-(2**63), 2**63 - 1), st.text(max_size=8)),
            min_size=1,
            max_size=40,
        )
    )
    def check(rows) -> None:
        users, items = [u for u, _ in rows], [i for _, i in rows]
        table = pa.table({"user_id": pa.array(users, pa.int64()), "item_id": pa.array(items)})
        assert (
            _offline_key(view, table).to_pylist()
            == canonical_keys([users, items], ["int64", "string"]).tolist()
        )

    check()


def test_offline_bucket_key_text_equals_the_canonical_keys() -> None:
    """Buckets of hashed views hash the key text on both sides: it must be the same text."""
    from pathlib import Path

    import duckdb
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from offline.latest import key_text_sql
    from offline.source import ViewSnapshot

    schema = pa.schema([("user_id", pa.int64()), ("item_id", pa.string()), ("event_timestamp", TS)])
    snap = ViewSnapshot("pair", schema, ("user_id", "item_id"), Path("."), (), (), 0)
    con = duckdb.connect()

    @settings(max_examples=50, deadline=None)
    @given(
        st.lists(
            st.tuples(st.integers(-(2**63), 2**63 - 1), st.text(max_size=8)),
            min_size=1,
            max_size=20,
        )
    )
    def check(rows) -> None:
        users, items = [u for u, _ in rows], [i for _, i in rows]
        t = pa.table({"user_id": pa.array(users, pa.int64()), "item_id": pa.array(items)})
        con.register("t", t)
        got = [r[0] for r in con.sql(f"SELECT {key_text_sql(snap)} FROM t").fetchall()]
        assert got == canonical_keys([users, items], ["int64", "string"]).tolist()

    check()


def test_merge_of_sorted_keys_pairs_like_the_hash_join() -> None:
    rng = np.random.default_rng(4)
    keys = np.unique(rng.integers(-(10**6), 10**6, 3000))
    off = pa.array(np.sort(rng.choice(keys, 2500, replace=False)))
    on = pa.array(np.sort(rng.choice(keys, 2600, replace=False)))
    merged, hashed = _sorted_pairs(off, on), _hashed_pairs(off, on)
    assert merged is not None
    for name in ("both", "only_off", "only_on"):
        assert getattr(merged, name).equals(getattr(hashed, name)), name
    col_off, col_on = pa.array(np.arange(2500)), pa.array(np.arange(2600))
    assert merged.take_off(col_off).equals(hashed.take_off(col_off))
    assert merged.take_on(col_on).equals(hashed.take_on(col_on))
    same = _sorted_pairs(off, off)
    assert same is not None and same.off_idx is None and len(same.only_on) == 0
    assert _sorted_pairs(pa.array([2, 1]), on) is None  # unsorted: the hash join instead
