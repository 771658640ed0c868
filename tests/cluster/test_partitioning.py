"""cluster/partitioning.py: Kafka's murmur2 and default partitioner, key texts, view routing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.errors import RoutingError
from cluster.partitioning import (
    Routing,
    hash_texts,
    key_texts,
    murmur2,
    partition_of,
    partitions_of,
    split_by_partition,
    view_routing,
)

# apache/kafka, clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2
KAFKA_UTILS_TEST = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}
# confluentinc/librdkafka, src/rdmurmur2.c, unittest_murmur2: java_murmur2_results (as int32)
_UNALIGNED = b"PreAmbleWillBeRemoved,ThePrePartThatIs"
LIBRDKAFKA = {
    b"kafka": 0xD067CF64,
    b"giberish123456789": 0x8F552B0C,
    b"1234": 0x9FC97B14,
    b"234": 0xE7C009CA,
    b"34": 0x873930DA,
    b"4": 0x5A4B5CA1,
    _UNALIGNED: 0x78424F1C,
    _UNALIGNED[1:]: 0x4A62B377,
    _UNALIGNED[2:]: 0xE0E4E09E,
    _UNALIGNED[3:]: 0x62B8B43F,
    b"": 0x106E08D9,
}


def _int32(u: int) -> int:
    return u - (1 << 32) if u >= 1 << 31 else u


def java_murmur2(data: bytes) -> int:
    """Oracle: a line-by-line port of Kafka's Utils.murmur2 (Java int = wrap to 32 bits)."""
    w = 0xFFFFFFFF
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & w
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & w
        k ^= k >> r
        k = (k * m) & w
        h = (h * m) & w
        h ^= k
    tail, rest = data[length & ~3 :], length % 4
    if rest >= 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * m) & w
    h ^= h >> 13
    h = (h * m) & w
    h ^= h >> 15
    return _int32(h)


@pytest.mark.parametrize("data, expected", sorted(KAFKA_UTILS_TEST.items()))
def test_murmur2_matches_kafka_utils_test_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected
    assert java_murmur2(data) == expected


@pytest.mark.parametrize("data, expected", sorted(LIBRDKAFKA.items()))
def test_murmur2_matches_librdkafka_java_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == _int32(expected)


@given(st.lists(st.text(max_size=40), max_size=60))
def test_batch_hash_equals_oracle_for_any_text(texts: list[str]) -> None:
    expected = [java_murmur2(t.encode()) for t in texts]
    assert hash_texts(pa.array(texts, pa.string())).tolist() == expected
    assert hash_texts(pa.array(texts, pa.large_string())).tolist() == expected


def test_sliced_and_chunked_arrays_hash_their_own_rows() -> None:
    arr = pa.array([f"k{i}" for i in range(50)])
    expected = [java_murmur2(f"k{i}".encode()) for i in range(10, 30)]
    assert hash_texts(arr.slice(10, 20)).tolist() == expected
    chunked = pa.chunked_array([arr.slice(10, 5), arr.slice(15, 15)])
    assert hash_texts(chunked).tolist() == expected
    assert hash_texts(pa.array(["", ""])).tolist() == [java_murmur2(b"")] * 2


def test_partition_is_kafka_default_partitioner() -> None:
    for text in ["21", "foobar", "user-17", "é", ""]:
        expected = (java_murmur2(text.encode()) & 0x7FFFFFFF) % 12
        assert partition_of(text, 12) == expected
        assert partitions_of(pa.array([text]), 12).tolist() == [expected]


def test_canonical_key_texts() -> None:
    ints = pa.array([42, -7, 0], pa.int64())
    strs = pa.array(["ab", "é", ""])
    assert key_texts([ints]).to_pylist() == ["42", "-7", "0"]
    assert key_texts([strs]).to_pylist() == ["ab", "é", ""]
    assert key_texts([ints, strs]).to_pylist() == ["2:422:ab", "2:-72:é", "1:00:"]


def test_composite_texts_are_unambiguous() -> None:
    a = key_texts([pa.array(["a:1", "a"]), pa.array(["b", "1:b"])]).to_pylist()
    assert a[0] != a[1]


def test_balance_over_100k_keys() -> None:
    P = 16
    for keys in (
        pa.array(np.arange(100_000, dtype=np.int64)),
        pa.array([f"u{i}" for i in range(100_000)]),
    ):
        counts = np.bincount(partitions_of(key_texts([keys]), P), minlength=P)
        expected = 100_000 / P
        assert counts.min() > 0.95 * expected and counts.max() < 1.05 * expected, counts
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 40.0, chi2  # 15 degrees of freedom: p < 0.001 above ~37.7


def test_split_keeps_row_order_within_each_partition() -> None:
    t = pa.table({"user_id": pa.array([5, 1, 5, 9, 1, 5], pa.int64()), "v": list(range(6))})
    routing = view_routing(["user_id"])
    parts = routing.partitions(t, 4)
    slices = routing.split(t, 4)
    assert sum(s.num_rows for s in slices.values()) == 6
    for p, s in slices.items():
        assert s.column("v").to_pylist() == [i for i in range(6) if parts[i] == p]


def test_partition_by_routes_composite_view_beside_its_entity() -> None:
    users = pa.array(np.arange(1000, dtype=np.int64))
    items = pa.array([f"item{i % 7}" for i in range(1000)])
    profile = view_routing(["user_id"])
    user_item = view_routing(
        ["user_id", "item_id"],
        {"user": ["user_id"], "item": ["item_id"]},
        partition_by="user",
    )
    assert user_item == Routing(columns=("user_id",))
    a = profile.partitions(pa.table({"user_id": users}), 8)
    b = user_item.partitions(pa.table({"user_id": users, "item_id": items}), 8)
    assert (a == b).all()
    by_both = view_routing(["user_id", "item_id"]).partitions(
        pa.table({"user_id": users, "item_id": items}), 8
    )
    assert not (a == by_both).all()


def test_replicate_all_sends_the_batch_to_every_partition() -> None:
    t = pa.table({"k": ["a", "b"]})
    slices = view_routing(["k"], replicate=True).split(t, 3)
    assert sorted(slices) == [0, 1, 2] and all(s is t for s in slices.values())
    with pytest.raises(RoutingError, match="use split"):
        view_routing(["k"], replicate=True).partitions(t, 3)


def test_routing_errors_name_the_problem() -> None:
    with pytest.raises(RoutingError, match="not an entity of the view"):
        view_routing(["user_id"], {"user": ["user_id"]}, partition_by="item")
    with pytest.raises(RoutingError, match="both"):
        view_routing(["k"], {"e": ["k"]}, partition_by="e", replicate=True)
    with pytest.raises(RoutingError, match="not all among"):
        view_routing(["a"], {"e": ["b"]}, partition_by="e")
    with pytest.raises(RoutingError, match="lacks routing key"):
        view_routing(["user_id"]).partitions(pa.table({"x": [1]}), 4)
    with pytest.raises(RoutingError, match="nulls"):
        key_texts([pa.array([1, None])])
    with pytest.raises(RoutingError, match="int64 or string"):
        key_texts([pa.array([1.5])])
    with pytest.raises(RoutingError, match="positive int"):
        partition_of("a", 0)
    with pytest.raises(RoutingError, match=r"\[0, 2\)"):
        split_by_partition(pa.table({"a": [1, 2]}), np.array([0, 5]), 2)
