"""Merged answers write event times as a single root does: one unit per column.

Each node formats its own rows with the shortest exact unit; the router (and a node merging its
tablets) must rewrite a merged column to the shortest unit exact for the whole column. Oracle:
app/feast_json.py `rfc3339` over the whole column, as a single root answers.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.feast_json import rfc3339
from cluster.scatter import merge_bodies, uniform_times

_SEC = 10**9
_values = st.one_of(
    st.just(0),  # a miss: the plain epoch
    st.integers(0, 4_000_000_000).map(lambda s: s * _SEC),
    st.integers(0, 4_000_000_000_000).map(lambda ms: ms * 10**6),
    st.integers(0, 4_000_000_000_000_000).map(lambda us: us * 10**3),
    st.integers(1, 4_000_000_000 * _SEC),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_values, st.integers(0, 3)), min_size=2, max_size=40))
def test_merged_column_equals_single_root(rows: list[tuple[int, int]]) -> None:
    ns = [v for v, _ in rows]
    node_of = [p for _, p in rows]
    merged: list[str | None] = [None] * len(ns)
    for p in set(node_of):
        idx = [i for i, q in enumerate(node_of) if q == p]
        for i, text in zip(idx, rfc3339([ns[i] for i in idx]), strict=True):
            merged[i] = text
    assert uniform_times(merged) == rfc3339(ns)


def test_merge_bodies_rewrites_each_column_once() -> None:
    def body(times: list[int]) -> dict:
        return {
            "metadata": {"feature_names": ["user_id", "v:x"]},
            "results": [
                {
                    "values": [1] * len(times),
                    "statuses": ["PRESENT"] * len(times),
                    "event_timestamps": ["1970-01-01T00:00:00Z"] * len(times),
                },
                {
                    "values": [1.0] * len(times),
                    "statuses": ["PRESENT"] * len(times),
                    "event_timestamps": rfc3339(times),
                },
            ],
        }

    a = [1_700_000_000 * _SEC, 0]
    b = [1_700_000_001 * _SEC + 5 * 10**6]
    out = merge_bodies([(np.array([0, 2]), body(a), None), (np.array([1]), body(b), None)], 3)
    assert out["results"][1]["event_timestamps"] == rfc3339([a[0], b[0], a[1]])
    assert out["results"][0]["event_timestamps"] == ["1970-01-01T00:00:00Z"] * 3
    # one body: its text is kept as the node wrote it
    one = merge_bodies([(np.array([0, 1]), body(a), None)], 2)
    assert one["results"][1]["event_timestamps"] == rfc3339(a)
