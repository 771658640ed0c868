"""The scalar routing of small reads equals the Arrow routing of cluster/partitioning.py."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cluster.key_hash import SMALL_ROWS, murmur2_positive, small_partitions
from cluster.partitioning import key_texts, murmur2, partitions_of


def _arrow(columns: list[list], p: int) -> np.ndarray:
    return partitions_of(key_texts([pa.array(c) for c in columns]), p)


def test_murmur2_matches_the_kernel_for_every_tail_length() -> None:
    rng = np.random.default_rng(3)
    for length in range(0, 40):
        data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        assert murmur2_positive(data) == murmur2(data) & 0x7FFFFFFF


def test_small_partitions_equal_the_arrow_path() -> None:
    rng = np.random.default_rng(5)
    for p in (1, 4, 7, 64):
        ints = [int(v) for v in rng.integers(-(2**63), 2**63 - 1, 12)] + [0, -1, 2**63 - 1]
        strs = ["", "a", "é", "user-42", "日本語キー", "x" * 33]
        for cols in ([ints[:SMALL_ROWS]], [strs], [ints[: len(strs)], strs], [strs, strs]):
            got = small_partitions(cols, p)
            assert got is not None and got.tolist() == _arrow(cols, p).tolist(), cols


def test_small_partitions_leave_the_rest_to_the_arrow_path() -> None:
    assert small_partitions([list(range(SMALL_ROWS + 1))], 4) is None
    assert small_partitions([[1, "a"]], 4) is None  # mixed: Arrow refuses it
    assert small_partitions([[1.0]], 4) is None
    assert small_partitions([[True]], 4) is None
    assert small_partitions([[None]], 4) is None
    assert small_partitions([[2**63]], 4) is None  # outside int64
    assert small_partitions([[]], 4) is None
