"""The numba point-in-time matcher against a dictionary-and-loop oracle."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from offline.pit_match import IntKeyMatcher


def _oracle(ent_keys, ent_ts, valid, rows, ttl, max_seq, lo_ts):
    by_key: dict[int, list] = {}
    for r in rows:
        if r[3] <= max_seq and r[1] >= lo_ts:
            by_key.setdefault(r[0], []).append(r)
    seqs, row_ids = [], []
    for k, t, ok in zip(ent_keys, ent_ts, valid, strict=True):
        cands = [r for r in by_key.get(int(k), []) if r[1] <= t] if ok else []
        best = max(cands, key=lambda r: (r[1], r[2], r[3], r[4]), default=None)
        if best is None or (ttl and best[1] < t - ttl):
            seqs.append(None)
            row_ids.append(None)
        else:
            seqs.append(best[3])
            row_ids.append(best[4])
    return seqs, row_ids


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("spread", [10, 33_000, 10**6, 10**15])  # direct table .. hash
def test_matcher_equals_oracle(seed, spread) -> None:
    rng = np.random.default_rng(seed)
    n_ent, n_rows = int(rng.integers(0, 300)), int(rng.integers(0, 600))
    universe = rng.integers(-spread, spread, 12)
    ent_keys = rng.choice(universe, n_ent).astype(np.int64)
    ent_ts = rng.integers(0, 40, n_ent).astype(np.int64)
    valid = rng.random(n_ent) > 0.1
    rows = []
    batches = []
    for seq in range(1, 6):
        m = n_rows // 5
        keys = rng.choice(universe, m).astype(np.int64)
        ets = rng.integers(0, 40, m).astype(np.int64)
        cts = rng.integers(0, 3, m).astype(np.int64)
        rows += [
            (int(k), int(e), int(c), seq, i)
            for i, (k, e, c) in enumerate(zip(keys, ets, cts, strict=True))
        ]
        batches.append(
            pa.table(
                {
                    "k": keys,
                    "event_timestamp": ets,
                    "created_timestamp": cts,
                    "_seq": np.full(m, seq, np.int64),
                    "_row": np.arange(m, dtype=np.int32),
                }
            )
        )
    for ttl, max_seq, lo_ts in [(0, 10**9, -(10**9)), (5, 3, -(10**9)), (1, 10**9, 7)]:
        matcher = IntKeyMatcher(ent_keys, ent_ts, valid)
        for b in batches:
            matcher.add(b, "k", max_seq, lo_ts)
        seq_arr, row_arr = matcher.finish(ttl)
        want_seq, want_row = _oracle(ent_keys, ent_ts, valid, rows, ttl, max_seq, lo_ts)
        assert seq_arr.to_pylist() == want_seq
        assert row_arr.to_pylist() == want_row


@pytest.mark.parametrize("seed", range(3))
def test_matcher_long_runs_and_equal_times(seed) -> None:
    """Dense keys sort by counting; runs longer than the insertion-sort cut-off, entity
    rows with equal (key, ts), and feature rows tied on every version field but _row."""
    rng = np.random.default_rng(seed)
    n_ent = 400
    ent_keys = rng.integers(100, 104, n_ent).astype(np.int64)  # runs of ~100 rows
    ent_ts = rng.integers(0, 25, n_ent).astype(np.int64)  # many equal (key, ts)
    valid = np.ones(n_ent, bool)
    m = 300
    keys = rng.integers(99, 105, m).astype(np.int64)
    ets = rng.integers(0, 25, m).astype(np.int64)
    cts = rng.integers(0, 2, m).astype(np.int64)
    batch = pa.table(
        {
            "k": keys,
            "event_timestamp": ets,
            "created_timestamp": cts,
            "_seq": np.full(m, 1, np.int64),
            "_row": rng.permutation(m).astype(np.int32),
        }
    )
    rows = [
        (int(k), int(e), int(c), 1, int(r))
        for k, e, c, r in zip(keys, ets, cts, batch.column("_row").to_pylist(), strict=True)
    ]
    for ttl in (0, 4):
        matcher = IntKeyMatcher(ent_keys, ent_ts, valid)
        matcher.add(batch.slice(0, 170), "k", None, None)
        matcher.add(batch.slice(170), "k", None, None, 170)
        seq_arr, row_arr = matcher.finish(ttl)
        assert (seq_arr.to_pylist(), row_arr.to_pylist()) == _oracle(
            ent_keys, ent_ts, valid, rows, ttl, 10**9, -(10**9)
        )
