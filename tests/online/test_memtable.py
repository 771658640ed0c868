"""Memtable string storage (Arrow chunks addressed by row) against a dict model: latest version
wins, older rows leave the string in place, lookup snapshots are isolated from later writes,
and a flush's sorted run carries the same strings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from online import Field
from online import _kernels as K
from online.memtable import Memtable, read_strings
from online.schema import Layout

LAYOUT = Layout([Field("x", "int64"), Field("s", "string"), Field("t", "string")])
TEXTS = ["", "a", "ü-ñ-字", "x" * 300, None]


def _insert(mem: Memtable, keys: list[int], ev: int, seq: int, s: list, t: list) -> None:
    n = len(keys)
    features = pa.record_batch(
        {
            "x": pa.array(keys, pa.int64()),
            "s": pa.array(s, pa.string()),  # small string: pack casts it to large_string
            "t": pa.array(t, pa.large_string()),
        }
    )
    ev_a = np.full(n, ev, dtype=np.int64)
    records, strings = LAYOUT.pack(ev_a, ev_a, seq, features)
    mem.insert(np.array(keys, dtype=np.uint64), records, np.arange(n), strings)


def _lookup(mem: Memtable, keys: list[int]):
    q = np.array(keys, dtype=np.uint64)
    out = np.zeros((len(q), LAYOUT.rowwords), dtype=np.int64)
    loc = np.full(len(q), -1, dtype=np.int64)
    todo = np.arange(len(q), dtype=np.int64)
    rem, source = mem.lookup(q, todo, len(q), out, loc, 0, strings=True)
    assert rem == 0
    return source, loc & ((1 << K.LOC_SHIFT) - 1)


def test_strings_follow_the_latest_version_and_snapshots_keep_theirs() -> None:
    rng = np.random.default_rng(3)
    mem = Memtable(LAYOUT, capacity=8)  # forces growth of the slot arrays
    model: dict[int, tuple[int, str | None, str | None]] = {}
    for seq in range(1, 40):
        keys = np.unique(rng.integers(0, 200, 30)).tolist()
        ev = int(rng.integers(0, 20))  # some batches are older than what they meet
        s = [TEXTS[i] for i in rng.integers(0, len(TEXTS), len(keys))]
        t = [None if v is None else v[::-1] + str(seq) for v in s]
        _insert(mem, keys, ev, seq, s, t)
        for k, a, b in zip(keys, s, t, strict=True):
            if k not in model or ev >= model[k][0]:
                model[k] = (ev, a, b)
    keys = sorted(model)
    source, pos = _lookup(mem, keys)
    for name, col in (("s", 1), ("t", 2)):
        want = [model[k][col] for k in keys]
        assert source.string_values(LAYOUT.fields[col], pos) == want
        assert mem.string_values(LAYOUT.fields[col], pos) == want
        for i in (0, len(keys) // 2, len(keys) - 1):  # the scalar path of a small read
            assert source.string_values(LAYOUT.fields[col], pos[i : i + 1]) == [want[i]], name
    # a later write changes the memtable, not the snapshot taken before it
    _insert(mem, keys, 10**6, 100, ["new"] * len(keys), [None] * len(keys))
    assert source.string_values(LAYOUT.fields[1], pos) == [model[k][1] for k in keys]
    assert mem.string_values(LAYOUT.fields[1], pos) == ["new"] * len(keys)
    run_keys, _, run_strings = mem.sorted_run()
    assert run_keys.tolist() == keys
    assert run_strings[1].to_pylist() == ["new"] * len(keys)
    assert run_strings[2].to_pylist() == [None] * len(keys)
    assert run_strings[1].type == pa.large_string()


def test_rows_inserted_without_strings_read_null() -> None:
    mem = Memtable(LAYOUT)
    _insert(mem, [1, 2], 1, 1, ["a", "b"], ["c", "d"])
    records = np.zeros((1, LAYOUT.rowwords), dtype=np.int64)
    records[:, 0] = records[:, 1] = 5
    records[:, 2] = 2
    mem.insert(np.array([2], dtype=np.uint64), records, np.arange(1), {})
    keys, _, strings = mem.sorted_run()
    assert keys.tolist() == [1, 2]
    assert strings[1].to_pylist() == ["a", None] and strings[2].to_pylist() == ["c", None]
    assert Memtable(LAYOUT).sorted_run()[2][1].to_pylist() == []


def test_read_strings_equals_a_python_oracle() -> None:
    rng = np.random.default_rng(4)
    chunks, starts, flat = [], [], []
    for _ in range(6):
        vals = [TEXTS[i] for i in rng.integers(0, len(TEXTS), int(rng.integers(1, 9)))]
        starts.append(len(flat))
        flat += vals
        chunks.append(pa.array(vals, pa.large_string()))
    for size in (0, 1, 3, 4, 5, 50):
        rows = rng.integers(-1, len(flat), size)
        want = [None if r < 0 else flat[r] for r in rows.tolist()]
        assert read_strings(chunks, starts, rows) == want
