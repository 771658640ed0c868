"""SSTable: written durably and reopened with its checksum, searched through the block index and
through the learned index alike (against np.searchsorted), string columns, damaged files, and the
deletion of an obsolete file once unreferenced."""

from __future__ import annotations

import gc

import numpy as np
import pyarrow as pa
import pytest

from online import Field, OnlineCorruptionError
from online import _kernels as K
from online._fsio import file_crc
from online.schema import Layout
from online.sstable import SSTable, write_sstable

from .test_plr import ADVERSARIAL

LAYOUT = Layout([Field("x", "int64")])
STR_LAYOUT = Layout([Field("x", "int64"), Field("s", "string")])


def _records(keys: np.ndarray, ev=None) -> np.ndarray:
    n = len(keys)
    recs = np.zeros((n, LAYOUT.rowwords), dtype=np.int64)
    recs[:, 0] = ev if ev is not None else 1
    recs[:, 2] = 1
    recs[:, 4] = keys.astype(np.int64)  # field x (offset 32) = the key, as a marker
    return recs


def _table(tmp_path, keys: np.ndarray, number: int = 1) -> SSTable:
    meta = write_sstable(tmp_path, number, LAYOUT, keys, _records(keys), {})
    return SSTable(tmp_path, meta, LAYOUT)


def _string_table(tmp_path, n: int = 50) -> tuple[SSTable, list[str | None]]:
    keys = np.arange(n, dtype=np.uint64) * np.uint64(3)
    texts = [None if i % 7 == 0 else f"v{i}-ü" for i in range(n)]
    batch = pa.record_batch({"x": pa.array(range(n), pa.int64()), "s": pa.array(texts)})
    ts = np.zeros(n, np.int64)
    recs, strings = STR_LAYOUT.pack(ts, ts, 1, batch)
    meta = write_sstable(tmp_path, 7, STR_LAYOUT, keys, recs, strings)
    return SSTable(tmp_path, meta, STR_LAYOUT), texts


def _probe(keys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Present keys, their neighbours, the extremes and random 64-bit values."""
    u = np.uint64
    near = np.concatenate([keys + u(1), keys - u(1)])
    extreme = np.array([0, 1, 2**63, 2**64 - 2, 2**64 - 1], dtype=u)
    rand = rng.integers(0, 2**64 - 1, 300, dtype=u, endpoint=True)
    q = np.concatenate([rng.choice(keys, 500), near[:1000], extreme, rand])
    rng.shuffle(q)
    return q


def _lookup(t: SSTable, q: np.ndarray, use_bloom: int = 1, hashed: bool = False):
    n = len(q)
    out = np.zeros((n, t.layout.rowwords), dtype=np.int64)
    loc = np.full(n, -1, dtype=np.int64)
    todo = np.arange(n, dtype=np.int64)
    hq = np.empty((n if hashed else 0, 2), dtype=np.uint64)  # empty: the kernel hashes itself
    if hashed:
        K.bloom_hashes(q, hq)
    rem = t.lookup(q, todo, n, out, loc, 3, use_bloom, hq)
    return rem, todo, out, loc


@pytest.mark.parametrize(
    "name",
    [
        "one key",
        "two far keys",
        "huge gaps",
        "dense runs",
        "clusters",
        "uniform 64-bit",
        "near max",
        "lognormal",
    ],
)
@pytest.mark.parametrize("mode", [K.MODE_BLOCK, K.MODE_LEARNED, "log radix"])
@pytest.mark.parametrize("use_bloom", [0, 1])
@pytest.mark.parametrize("hashed", [True, False])
def test_table_lookup_matches_searchsorted(tmp_path, name, mode, use_bloom, hashed) -> None:
    keys = ADVERSARIAL[name]
    t = _table(tmp_path, keys)
    if mode != K.MODE_BLOCK:  # a table searches through its block index until it is learned
        t.learn(8, radix="log" if mode == "log radix" else "linear")
    mode = K.MODE_LEARNED if mode == "log radix" else mode
    assert t.index_code == mode
    q = _probe(keys, np.random.default_rng(1))
    rem, todo, out, loc = _lookup(t, q, use_bloom, hashed)
    pos = np.searchsorted(keys, q).clip(0, len(keys) - 1)
    expect = keys[pos] == q
    assert np.array_equal(loc >= 0, expect)
    assert np.array_equal(loc[expect] & ((1 << K.LOC_SHIFT) - 1), pos[expect])
    assert np.all(loc[expect] >> K.LOC_SHIFT == 3)
    assert np.array_equal(out[expect, 4], q[expect].astype(np.int64))
    assert not out[~expect].any()
    assert rem == (~expect).sum()
    assert sorted(todo[:rem]) == list(np.flatnonzero(~expect))


def test_written_table_reopens_with_its_keys_records_and_manifest_entry(tmp_path) -> None:
    keys = ADVERSARIAL["clusters"]
    recs = _records(keys, ev=np.arange(len(keys)))
    meta = write_sstable(tmp_path, 12, LAYOUT, keys, recs, {})
    assert meta["file"] == "000012.sst" and not list(tmp_path.glob("*.tmp"))
    assert (meta["bytes"], meta["crc32c"]) == file_crc(tmp_path / meta["file"])
    assert (meta["keys"], meta["min_key"], meta["max_key"]) == (len(keys), keys[0], keys[-1])
    assert meta["max_event_ts"] == len(keys) - 1 and meta["max_seq"] == 1
    t = SSTable(tmp_path, meta, LAYOUT)  # verifies size and CRC32C
    assert len(t) == len(keys) and t.index_mode == "block" and t.model is None
    assert np.array_equal(t.keys, keys) and np.array_equal(t.records, recs)
    assert t.max_event_ts == len(keys) - 1
    del meta["max_event_ts"]  # an entry written before it carried the newest times
    assert SSTable(tmp_path, meta, LAYOUT).max_event_ts == len(keys) - 1


def test_learning_switches_the_index_and_keeps_every_answer(tmp_path) -> None:
    keys = ADVERSARIAL["lognormal"]
    t = _table(tmp_path, keys)
    q = _probe(keys, np.random.default_rng(4))
    before = _lookup(t, q)
    m = t.learn(4, fit="greedy")
    assert t.model is m and t.delta == 4 and t.index_mode == "learned"
    assert np.abs(m.predict(keys) - np.arange(len(keys))).max() <= 4
    after = _lookup(t, q)
    assert before[0] == after[0]
    for a, b in zip(before[1:], after[1:], strict=True):
        assert np.array_equal(a, b)


def test_string_columns_read_back_by_position_and_whole(tmp_path) -> None:
    t, texts = _string_table(tmp_path)
    s = STR_LAYOUT.fields[1]
    for positions in ([3], [0, 1, 2], list(range(0, 50, 3))):  # scalar reads and take()
        assert t.string_values(s, np.array(positions)) == [texts[p] for p in positions]
    col = t.string_column(s)
    assert col.type == pa.large_string() and col.to_pylist() == texts
    absent = Field("later", "string")  # appended after the table was written: all null
    assert t.string_values(absent, np.array([1, 2])) == [None, None]
    assert t.string_column(absent).null_count == len(t)


def test_a_flipped_byte_fails_the_checksum_naming_the_file(tmp_path) -> None:
    keys = ADVERSARIAL["uniform 64-bit"]
    meta = write_sstable(tmp_path, 1, LAYOUT, keys, _records(keys), {})
    p = tmp_path / meta["file"]
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(OnlineCorruptionError, match="CRC32C") as e:
        SSTable(tmp_path, meta, LAYOUT)
    assert e.value.path == str(p)


@pytest.mark.parametrize(
    ("damage", "match"),
    [("zeros", "not a readable sstable"), ("layout", "schema or row count"), ("gone", "missing")],
)
def test_unreadable_tables_name_the_file_and_the_problem(tmp_path, damage, match) -> None:
    keys = ADVERSARIAL["dense runs"]
    meta = write_sstable(tmp_path, 1, LAYOUT, keys, _records(keys), {})
    p = tmp_path / meta["file"]
    layout = LAYOUT
    if damage == "zeros":
        p.write_bytes(b"\0" * p.stat().st_size)
    elif damage == "layout":
        layout = Layout([Field("x", "int64"), Field("y", "float32")])
    else:
        p.unlink()
    with pytest.raises(OnlineCorruptionError, match=f"{meta['file']}: .*{match}"):
        SSTable(tmp_path, meta, layout, verify=False)


def test_an_obsolete_file_is_deleted_when_its_last_reference_goes(tmp_path) -> None:
    t = _table(tmp_path, ADVERSARIAL["step"])
    path = t.path
    view = t.keys  # numpy views keep the mapping, not the SSTable object
    t.mark_obsolete()
    assert path.exists()
    del t
    gc.collect()
    assert not path.exists()
    assert len(view) == 2000  # the mapping outlives the unlink
