"""Schema evolution (appending fields), schema mismatches and bad input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from online import (
    ClosedError,
    Field,
    LSMTree,
    OnlineError,
    SchemaMismatchError,
    TreeOptions,
)

from .helpers import FIELDS, make_batch

OPTS = TreeOptions(index="auto", background=False)
Z = np.zeros(3, np.int64)
K3 = np.array([1, 2, 3], np.uint64)


def _batch3(tag: int = 1) -> pa.RecordBatch:
    return make_batch(np.random.default_rng(tag), 3, tag)


@pytest.mark.parametrize("compact", [False, True])
def test_appended_fields_read_null_for_older_rows(tmp_path, compact) -> None:
    tree = LSMTree(tmp_path, FIELDS, OPTS)
    tree.write(1, K3, Z, Z, _batch3())
    tree.close()
    more = FIELDS + [Field("n", "int64"), Field("e", "float32[3]"), Field("w", "string")]
    tree = LSMTree(tmp_path, more, OPTS)
    b = _batch3(2).slice(0, 1)
    b = pa.RecordBatch.from_arrays(
        b.columns
        + [pa.array([7]), pa.array([[1, 2, 3]], pa.list_(pa.float32(), 3)), pa.array(["new"])],
        names=[f.name for f in more],
    )
    tree.write(2, np.array([3], np.uint64), Z[:1] + 1, Z[:1], b)
    if compact:
        tree.compact(full=True)
    r = tree.get_many(np.array([1, 2, 3, 4], np.uint64))
    assert r.found.tolist() == [True, True, True, False]
    assert r.valid("n").tolist() == [False, False, True, False]
    assert r.values("n")[2] == 7 and r.values("e")[2].tolist() == [1, 2, 3]
    assert r.values("w").tolist() == [None, None, "new", None]
    assert r.values("i")[:2].tolist() == [x if x else 0 for x in [1000, 1001]]
    t = tree.scan()
    assert t.column("n").to_pylist() == [None, None, 7]
    tree.close()
    with pytest.raises(SchemaMismatchError, match="'n'"):  # dropping fields again is refused
        LSMTree(tmp_path, FIELDS, OPTS)


@pytest.mark.parametrize(
    "fields, match",
    [
        ([Field("f", "float32")] + FIELDS[1:], "'f'"),
        ([Field("g", "float64")] + FIELDS[1:], "'f'"),
        (FIELDS[:-1], "'t'"),
        (FIELDS[1:] + FIELDS[:1], "'f'"),
    ],
)
def test_changed_fields_are_refused_naming_the_field(tmp_path, fields, match) -> None:
    LSMTree(tmp_path, FIELDS, OPTS).close()
    with pytest.raises(SchemaMismatchError, match=match):
        LSMTree(tmp_path, fields, OPTS)


def test_bad_writes_name_what_was_wrong(tmp_path) -> None:
    tree = LSMTree(tmp_path, FIELDS, OPTS)
    with pytest.raises(OnlineError, match="lack column 'v'"):
        tree.write(1, K3, Z, Z, _batch3().drop_columns(["v"]))
    wrong = _batch3().set_column(0, "f", pa.array(["a", "b", "c"]))
    with pytest.raises(OnlineError, match="column 'f': expected float64"):
        tree.write(1, K3, Z, Z, wrong)
    with pytest.raises(OnlineError, match="differ in length"):
        tree.write(1, K3, Z[:2], Z, _batch3())
    with pytest.raises(OnlineError, match="features have 3 rows but keys have 2"):
        tree.write(1, K3[:2], Z[:2], Z[:2], _batch3())
    with pytest.raises(OnlineError, match="negative"):
        tree.write(1, np.array([-1, 2, 3]), Z, Z, _batch3())
    with pytest.raises(OnlineError, match="1-D"):
        tree.get_many(np.zeros((2, 2), np.uint64))
    tree.write(5, K3, Z, Z, _batch3())
    with pytest.raises(OnlineError, match="seq 5 is not above"):
        tree.write(5, K3, Z, Z, _batch3())
    assert tree.last_seq == 5 and tree.durable_seq == 0
    tree.close()
    assert tree.durable_seq == 5
    with pytest.raises(ClosedError):
        tree.get_many(K3)
    with pytest.raises(ClosedError):
        tree.write(6, K3, Z, Z, _batch3())


def test_options_and_fields_are_validated() -> None:
    with pytest.raises(OnlineError, match="index"):
        TreeOptions(index="btree")
    with pytest.raises(OnlineError, match="delta"):
        TreeOptions(delta=0)
    with pytest.raises(OnlineError, match="unknown dtype"):
        Field("x", "float16")
    with pytest.raises(OnlineError, match="unknown dtype"):
        Field("x", "float32[0]")
    with pytest.raises(OnlineError, match="duplicate"):
        LSMTree("/nonexistent-never-created", [Field("a", "int32"), Field("a", "int64")])


def test_empty_batches_and_lookups(tmp_path) -> None:
    tree = LSMTree(tmp_path, FIELDS, OPTS)
    e = np.zeros(0, np.int64)
    tree.write(1, np.zeros(0, np.uint64), e, e, _batch3().slice(0, 0))
    tree.flush()
    assert tree.durable_seq == 1
    r = tree.get_many(np.zeros(0, np.uint64))
    assert len(r) == 0 and r.to_arrow().num_rows == 0
    assert tree.scan().num_rows == 0
    tree.close()
