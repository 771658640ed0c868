"""Shared helpers of the online tests: a small schema, batch builders and a stand-in sstable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from online import Field

FIELDS = [
    Field("f", "float64"),
    Field("i", "int32"),
    Field("s", "string"),
    Field("v", "float32[2]"),
    Field("b", "bool"),
    Field("t", "timestamp"),
]


def make_batch(rng: np.random.Generator, n: int, tag: int) -> pa.RecordBatch:
    """n rows of FIELDS; `i` = tag * 1000 + row so a row is identifiable; about 1/5 nulls."""
    null = rng.random(n) < 0.2
    ints = np.arange(n, dtype=np.int32) + np.int32(tag * 1000)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(rng.random(n)),
            pa.array(ints, mask=null),
            pa.array([None if null[r] else f"s{tag}-{r}" for r in range(n)], type=pa.string()),
            pa.FixedSizeListArray.from_arrays(
                pa.array(rng.random(2 * n).astype(np.float32)), 2, mask=pa.array(null)
            ),
            pa.array(rng.random(n) < 0.5),
            pa.array(rng.integers(0, 10**18, n), type=pa.timestamp("ns", tz="UTC")),
        ],
        names=[f.name for f in FIELDS],
    )


def row_of(batch: pa.RecordBatch, r: int) -> dict:
    """Python values of row r of a make_batch batch."""
    row = {name: batch.column(name)[r].as_py() for name in batch.schema.names}
    row["t"] = batch.column("t")[r].value  # int64 ns
    return row


@dataclass
class FakeTable:
    """An sstable as compaction picking and version edits see it: a name and a manifest entry."""

    name: str
    nbytes: int = 100
    meta: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.meta = {"file": self.name, "bytes": self.nbytes}


def fake_table(name: str, nbytes: int = 100) -> Any:
    """A FakeTable, typed to stand where an SSTable is expected."""
    return FakeTable(name, nbytes)
