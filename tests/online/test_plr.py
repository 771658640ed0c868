"""PLR fits (the optimal convex-hull PLA and Greedy-PLR): every key lies within +-delta of its
prediction, on adversarial key sets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online import PLRModel
from online.options import PLR_FITS

MAX = np.iinfo(np.uint64).max


def _adversarial() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    u = np.uint64
    sets = {
        "one key": np.array([42], dtype=u),
        "zero": np.array([0], dtype=u),
        "max": np.array([MAX], dtype=u),
        "two keys": np.array([1, 2], dtype=u),
        "two far keys": np.array([0, MAX], dtype=u),
        "huge gaps": np.array([0, 1, 2, 1 << 40, (1 << 40) + 1, 1 << 63, MAX - 1, MAX], dtype=u),
        "near zero": np.arange(0, 5000, dtype=u),
        "near max": MAX - np.arange(5000, dtype=u)[::-1],
        "dense runs": np.concatenate(
            [np.arange(s, s + 300, dtype=u) for s in range(0, 10**6, 7919)]
        ),
        "clusters": np.unique(
            np.concatenate(
                [
                    c + rng.integers(0, 1000, 500).astype(u)
                    for c in rng.integers(0, 1 << 62, 40).astype(u)
                ]
            )
        ),
        "uniform 64-bit": np.unique(rng.integers(0, MAX, 20000, dtype=u, endpoint=True)),
        "lognormal": np.unique(rng.lognormal(0, 2, 20000) * 1e12).astype(u),
        "geometric gaps": np.unique(np.cumsum(2 ** rng.integers(0, 40, 3000).astype(u))),
        "step": np.concatenate([np.arange(1000, dtype=u), np.arange(1000, dtype=u) + u(1 << 50)]),
    }
    return {k: np.unique(v) for k, v in sets.items()}


ADVERSARIAL = _adversarial()


FITS = list(PLR_FITS)


def _assert_within_delta(keys: np.ndarray, delta: int, fit: str = "optimal") -> PLRModel:
    m = PLRModel(keys, delta, fit=fit)
    err = np.abs(m.predict(keys) - np.arange(len(keys)))
    assert err.max() <= delta, f"max error {err.max()} > delta {delta}"
    assert m.segments >= 1 and m.seg_keys[0] == keys[0]
    assert np.all(np.diff(m.seg_keys.astype(object)) > 0) if m.segments > 1 else True
    return m


@pytest.mark.parametrize("fit", FITS)
@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
@pytest.mark.parametrize("delta", [1, 8, 64])
def test_every_key_within_delta_of_its_prediction(name: str, delta: int, fit: str) -> None:
    _assert_within_delta(ADVERSARIAL[name], delta, fit)


@settings(max_examples=60)
@given(
    st.lists(st.integers(0, int(MAX)), min_size=1, max_size=300, unique=True),
    st.sampled_from([1, 2, 8, 32]),
    st.sampled_from(FITS),
)
def test_within_delta_on_random_key_sets(keys: list[int], delta: int, fit: str) -> None:
    _assert_within_delta(np.array(sorted(keys), dtype=np.uint64), delta, fit)


@settings(max_examples=60)
@given(
    st.integers(0, int(MAX) // 2),
    st.lists(st.integers(1, 1 << 20), min_size=1, max_size=2000),
    st.sampled_from([1, 2, 8]),
)
def test_optimal_fit_within_delta_on_dense_runs(start: int, gaps: list[int], delta: int) -> None:
    """Near-collinear runs with small gaps: the hull pops and rotates its bounding lines often."""
    keys = np.unique(np.uint64(start) + np.cumsum(np.array(gaps, dtype=np.uint64)))
    _assert_within_delta(keys, delta, "optimal")


@pytest.mark.parametrize("name", ["clusters", "lognormal", "uniform 64-bit", "dense runs"])
def test_optimal_fit_needs_fewer_segments_than_greedy(name: str) -> None:
    keys = ADVERSARIAL[name]
    optimal = PLRModel(keys, 8, fit="optimal").segments
    greedy = PLRModel(keys, 8, fit="greedy").segments
    assert optimal <= greedy, (optimal, greedy)


def test_unknown_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="fit"):
        PLRModel(ADVERSARIAL["one key"], 8, fit="best")


@pytest.mark.parametrize("radix", ["linear", "log"])
@pytest.mark.parametrize(
    "name", ["clusters", "lognormal", "uniform 64-bit", "huge gaps", "near max"]
)
def test_radix_table_points_at_the_segment_of_every_key(name: str, radix: str) -> None:
    keys = ADVERSARIAL[name]
    m = PLRModel(keys, 8, radix=radix)
    prefix = m.prefix(keys)
    seg = np.searchsorted(m.seg_keys, keys, side="right") - 1
    lo = np.maximum(m.radix[prefix] - 1, 0)
    hi = m.radix[prefix + 1]
    assert np.all((lo <= seg) & (seg < np.maximum(hi, lo + 1)))


def test_model_is_small_on_uniform_keys() -> None:
    keys = ADVERSARIAL["uniform 64-bit"]
    m = PLRModel(keys, 8)
    assert m.nbytes / len(keys) < 1.0
    assert m.segments < len(keys) / 20


def test_model_needs_a_key() -> None:
    with pytest.raises(ValueError):
        PLRModel(np.zeros(0, dtype=np.uint64), 8)


def test_auto_radix_picks_log_buckets_for_skewed_keys() -> None:
    assert (
        PLRModel(ADVERSARIAL["lognormal"], 8).radix_kind
        == PLRModel(ADVERSARIAL["lognormal"], 8, radix="log").radix_kind
    )
    assert PLRModel(ADVERSARIAL["lognormal"], 8).radix_kind == 1
    assert PLRModel(ADVERSARIAL["uniform 64-bit"], 8).radix_kind == 0
    with pytest.raises(ValueError):
        PLRModel(ADVERSARIAL["uniform 64-bit"], 8, radix="btree")
