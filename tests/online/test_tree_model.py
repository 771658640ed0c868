"""Stateful property test: an LSMTree against a dict model, in all three index modes.

Random batches (duplicate keys, out-of-order event times, ties), flushes, compactions (pending
and full), the analyzer, close/reopen; every get_many (hits and misses) and scan equals the model.
"""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from online import LSMTree, TreeOptions

from .helpers import FIELDS, make_batch, row_of

# a small key space so batches collide, plus extremes of the uint64 range
KEYS = st.one_of(
    st.integers(0, 40), st.integers(2**64 - 5, 2**64 - 1), st.integers(2**40, 2**40 + 3)
)


class TreeMachine(RuleBasedStateMachine):
    index = "auto"

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="rickhouse-online-")
        self.options = TreeOptions(
            index=self.index,
            background=False,
            memtable_bytes=4096,
            l0_trigger=2,
            level1_bytes=6000,
            size_ratio=2,
            t_wait_s=0.0,
            verify_checksums=True,
        )
        self.tree = LSMTree(self.dir, FIELDS, self.options)
        self.model: dict[int, tuple[tuple, dict]] = {}
        self.seq = 0
        self.rng = np.random.default_rng(0)

    def teardown(self) -> None:
        self.tree.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(
        keys=st.lists(KEYS, min_size=0, max_size=40),
        times=st.data(),
    )
    def write(self, keys: list[int], times: st.DataObject) -> None:
        n = len(keys)
        ev = np.array(times.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), np.int64)
        cr = np.array(times.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), np.int64)
        self.seq += int(times.draw(st.integers(1, 3)))
        batch = make_batch(self.rng, n, self.seq)
        self.tree.write(self.seq, np.array(keys, dtype=np.uint64), ev, cr, batch)
        for r, k in enumerate(keys):
            version = (int(ev[r]), int(cr[r]), self.seq, r)
            if k not in self.model or version >= self.model[k][0]:
                self.model[k] = (version, row_of(batch, r))

    @rule()
    def flush(self) -> None:
        self.tree.flush()
        assert self.tree.durable_seq == self.seq

    @rule()
    def compact(self) -> None:
        self.tree.compact()

    @rule()
    def compact_full(self) -> None:
        self.tree.compact(full=True)
        assert sum(lv["sstables"] for lv in self.tree.stats()["levels"]) <= 1

    @rule()
    def analyze(self) -> None:
        learned = self.tree.analyze()
        if self.index != "auto":
            assert learned == []

    @rule()
    def reopen(self) -> None:
        self.tree.close()
        self.tree = LSMTree(self.dir, FIELDS, self.options)
        assert self.tree.durable_seq == self.seq

    @rule(probe=st.lists(KEYS, min_size=1, max_size=30))
    def get_many(self, probe: list[int]) -> None:
        self._check(probe)

    @precondition(lambda self: self.model)
    @invariant()
    def all_keys_match(self) -> None:
        self._check(sorted(self.model) + [41, 2**40 + 4])

    def _check(self, probe: list[int]) -> None:
        r = self.tree.get_many(np.array(probe, dtype=np.uint64))
        f = r.values("f")
        i, iv = r.values("i"), r.valid("i")
        s = r.values("s")
        v, vv = r.values("v"), r.valid("v")
        ts = r.values("t")
        for j, k in enumerate(probe):
            if k not in self.model:
                assert not r.found[j], f"key {k} found but never written"
                continue
            (ev, cr, seq, _), row = self.model[k]
            assert r.found[j], f"key {k} not found"
            assert (r.event_ts[j], r.created_ts[j], r.seq[j]) == (ev, cr, seq), k
            assert f[j] == row["f"]
            assert (iv[j], i[j] if iv[j] else None) == (row["i"] is not None, row["i"])
            assert s[j] == row["s"]
            assert vv[j] == (row["v"] is not None)
            if vv[j]:
                assert v[j].tolist() == pytest.approx(row["v"])
            assert ts[j] == row["t"]

    @rule()
    def scan(self) -> None:
        t = self.tree.scan()
        assert t.column("key").to_pylist() == sorted(self.model)
        assert t.column("seq").to_pylist() == [self.model[k][0][2] for k in sorted(self.model)]
        assert t.column("s").to_pylist() == [self.model[k][1]["s"] for k in sorted(self.model)]


class BlockMachine(TreeMachine):
    index = "block"


class LearnedMachine(TreeMachine):
    index = "learned"


class AutoMachine(TreeMachine):
    index = "auto"


_SETTINGS = settings(max_examples=12, stateful_step_count=25, deadline=None)
TestBlockTree = BlockMachine.TestCase
TestBlockTree.settings = _SETTINGS
TestLearnedTree = LearnedMachine.TestCase
TestLearnedTree.settings = _SETTINGS
TestAutoTree = AutoMachine.TestCase
TestAutoTree.settings = _SETTINGS
