"""Entity keys: order-preserving int mapping, unambiguous canonical text, collision-safe slots."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.errors import ValidationError
from store.keys import (
    MAX_PROBE,
    PROBE_BITS,
    PendingClaims,
    bucket_keys,
    canonical_keys,
    int_to_key,
    key_to_int,
    probe_keys,
    resolve_keys,
)

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(st.lists(INT64, min_size=1, max_size=200))
def test_int_keys_preserve_order_and_roundtrip(values) -> None:
    a = np.array(values, dtype=np.int64)
    k = int_to_key(a)
    assert k.dtype == np.uint64
    np.testing.assert_array_equal(np.argsort(k, kind="stable"), np.argsort(a, kind="stable"))
    np.testing.assert_array_equal(key_to_int(k), a)


@given(
    st.lists(
        st.tuples(st.text(max_size=6), st.text(max_size=6)), min_size=2, max_size=50, unique=True
    )
)
def test_canonical_text_is_unambiguous_for_composites(pairs) -> None:
    cols = [[a for a, _ in pairs], [b for _, b in pairs]]
    canon = canonical_keys(cols, ["string", "string"])
    assert len(set(canon.tolist())) == len(pairs)


def test_canonical_text_distinguishes_types_and_splits() -> None:
    a = canonical_keys([["ab"], ["c"]], ["string", "string"])[0]
    b = canonical_keys([["a"], ["bc"]], ["string", "string"])[0]
    c = canonical_keys([[1], ["x"]], ["int64", "string"])[0]
    d = canonical_keys([["1"], ["x"]], ["string", "string"])[0]
    assert len({a, b, c, d}) == 4


def test_bucket_keys_use_only_hash_bits_and_leave_probe_bits_zero() -> None:
    canon = canonical_keys([[f"user{i}" for i in range(1000)]], ["string"])
    keys = bucket_keys(canon, hash_bits=3)
    assert set((keys >> np.uint64(PROBE_BITS)).tolist()) <= set(range(8))
    assert not (keys & np.uint64(MAX_PROBE)).any()
    full = bucket_keys(canon)
    assert len(set(full.tolist())) == 1000


class DictTree:
    """An oracle of the online engine for the pure resolver: key -> canonical text."""

    def __init__(self) -> None:
        self.rows: dict[int, str] = {}

    def lookup(self, keys: np.ndarray):
        found = np.array([int(k) in self.rows for k in keys], dtype=bool)
        stored = np.array([self.rows.get(int(k)) for k in keys], dtype=object)
        return found, stored


def test_resolution_with_a_tiny_hash_space_gives_every_entity_its_own_key() -> None:
    rng = np.random.default_rng(7)
    tree = DictTree()
    claims = PendingClaims()
    owner: dict[str, int] = {}
    pending = []
    for seq in range(1, 30):
        names = [f"e{int(i)}" for i in rng.integers(0, 300, size=40)]
        uniq = list(dict.fromkeys(names))
        canon = canonical_keys([uniq], ["string"])
        keys = resolve_keys(canon, bucket_keys(canon, hash_bits=2), tree.lookup, claims, seq, "v")
        for c, k in zip(canon.tolist(), keys.tolist(), strict=True):
            assert owner.setdefault(c, k) == k, "an entity changed its key"
        pending.append((seq, canon, keys))
        if seq % 3:  # apply the pending batches in seq order now; leave others pending a while
            for s, cs, ks in pending:
                for c, k in zip(cs.tolist(), ks.tolist(), strict=True):
                    tree.rows[k] = c
                claims.release(s)
            pending.clear()
    assert len(set(owner.values())) == len(owner), "two entities share a key"
    canon = np.array(list(owner), dtype=object)
    for c, k in owner.items():
        tree.rows[k] = c
    keys, found = probe_keys(canon, bucket_keys(canon, hash_bits=2), tree.lookup)
    assert found.all()
    assert keys.tolist() == [owner[c] for c in canon.tolist()]
    miss = canonical_keys([["stranger"]], ["string"])
    assert not probe_keys(miss, bucket_keys(miss, hash_bits=2), tree.lookup)[1].any()


def test_a_full_bucket_is_refused_with_a_clear_error() -> None:
    tree = DictTree()
    claims = PendingClaims()
    canon = canonical_keys([[f"e{i}" for i in range(2 * (MAX_PROBE + 1) + 1)]], ["string"])
    with pytest.raises(ValidationError, match="no free key slot"):
        resolve_keys(canon, bucket_keys(canon, hash_bits=1), tree.lookup, claims, 1, "v")
