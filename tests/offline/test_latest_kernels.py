"""offline/_latest_kernels.py: the latest row per int64 key against a dict oracle."""

from __future__ import annotations

import numpy as np
import pytest

from offline._latest_kernels import latest_rows


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_latest_rows_match_a_dict_oracle(n: int) -> None:
    rng = np.random.default_rng(n)
    keys = rng.integers(-50, 50, n)
    ets, cts, seq = (rng.integers(0, 3, n) for _ in range(3))
    ets[: n // 10] = np.iinfo(np.int64).min  # nulls lose to any time
    row = rng.permutation(n)  # unique: a strict order
    want: dict[int, int] = {}
    for i in range(n):
        k = int(keys[i])
        v = (ets[i], cts[i], seq[i], row[i])
        j = want.get(k)
        if j is None or v > (ets[j], cts[j], seq[j], row[j]):
            want[k] = i
    got = latest_rows(keys, ets, cts, seq, row)
    assert [int(keys[i]) for i in got] == sorted(want)
    assert got.tolist() == [want[k] for k in sorted(want)]


def test_latest_rows_refuses_arrays_of_different_lengths() -> None:
    a = np.zeros(3, np.int64)
    with pytest.raises(ValueError, match="lengths"):
        latest_rows(a, a, a, a, a[:2])
