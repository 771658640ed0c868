"""The cost-benefit analyzer of index="auto": its decisions on hand-built statistics (benefit =
expected lookups x saving, cost = keys x build ns/key), and inside a tree (busy sstables are
learned, idle and young ones are not, and a slow warm-up call teaches it nothing)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from online import LSMTree, TreeOptions
from online.analyzer import Analyzer
from online.sstable import WARMUP_CALLS, SSTable

from .helpers import FIELDS, make_batch

OPTS = TreeOptions(
    index="auto", t_wait_s=1.0, build_ns_per_key_prior=10.0, learned_saving_prior=0.5
)


@dataclass
class FakeTable:
    """What the analyzer reads of an sstable."""

    name: str
    keys: int = 10_000
    lived: float = 5.0
    lookups_positive: int = 0
    lookups_negative: int = 0
    ns_block: int = 0
    keys_block: int = 0
    ns_learned: int = 0
    keys_learned: int = 0
    model: object = None

    def age(self) -> float:
        return self.lived

    def __len__(self) -> int:
        return self.keys


def _served(name: str, lookups: int, block_ns_per_key: int, **kw: Any) -> FakeTable:
    """A table that served `lookups` hits in block mode at `block_ns_per_key`."""
    t = FakeTable(name, lookups_positive=lookups, keys_block=lookups, **kw)
    t.ns_block = lookups * block_ns_per_key
    return t


def _evaluate(a: Analyzer, *tables: tuple[int, FakeTable]) -> list[str]:
    return [t.name for t in a.evaluate(list(tables))]  # type: ignore[arg-type]


def test_learns_when_the_expected_saving_exceeds_the_build_cost() -> None:
    a = Analyzer(OPTS)
    # benefit: 2 x 1000 served x 0.5 x 400 ns = 400 us > cost: 10k keys x 10 ns = 100 us
    assert _evaluate(a, (0, _served("busy", 1000, 400))) == ["busy"]
    (d,) = a.decisions
    assert d["decision"] == "learn" and d["expected_lookups"] == 2000
    assert (d["saving_ns"], d["benefit_ns"], d["cost_ns"]) == (200.0, 400_000, 100_000)
    assert a.learned == 1 and a.skipped == 0


def test_skips_once_when_the_cost_exceeds_the_saving() -> None:
    a = Analyzer(OPTS)
    idle = _served("idle", 10, 400)  # benefit 4 us < cost 100 us
    assert _evaluate(a, (0, idle)) == [] and _evaluate(a, (0, idle)) == []
    assert a.skipped == 1 and [d["decision"] for d in a.decisions] == ["skip"]
    idle.lookups_positive = idle.keys_block = 5000  # it got busy: learned now
    idle.ns_block = 5000 * 400
    assert _evaluate(a, (0, idle)) == ["idle"]


def test_young_and_learned_tables_are_not_considered() -> None:
    a = Analyzer(OPTS)
    young = _served("young", 10**6, 400, lived=0.5)
    learned = _served("learned", 10**6, 400, model=object())
    assert _evaluate(a, (0, young), (0, learned)) == [] and not a.decisions
    assert a.snapshot([(0, young), (0, learned)])["pending"] == 1  # type: ignore[list-item]


def test_measured_learned_lookups_replace_the_prior_saving() -> None:
    a = Analyzer(OPTS)
    # a learned table of the same level is as slow as the block ones: no saving to expect
    fast = FakeTable("l", model=object(), ns_learned=1000 * 400, keys_learned=1000)
    assert _evaluate(a, (1, fast), (1, _served("b", 1000, 400))) == []
    assert a.decisions[-1]["saving_ns"] == 0.0


def test_retired_tables_set_the_expected_lookups_and_builds_the_cost() -> None:
    a = Analyzer(OPTS)
    a.retire(2, _served("gone", 50, 400))  # type: ignore[arg-type]
    assert a.retired_lookups(2) == (50, 0) and a.retired_lookups(1) == (0, 0)
    # served a lot so far, but tables of L2 served 50 lookups in their whole life
    assert _evaluate(a, (2, _served("t", 5000, 400))) == []
    assert a.decisions[-1]["expected_lookups"] == 50
    a.record_build(1000, 500)  # builds turn out cheap: 0.5 ns/key
    assert a.build_ns_per_key == 0.5
    assert _evaluate(a, (2, _served("t2", 5000, 400))) == ["t2"]  # 50 x 200 ns > 10k x 0.5 ns


# ---- inside a tree --------------------------------------------------------------------------


def _fill(tree: LSMTree, n: int = 3000, batches: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    keys = rng.choice(2**40, n * batches, replace=False).astype(np.uint64)
    for b in range(batches):
        k = keys[b * n : (b + 1) * n]
        ts = np.zeros(n, np.int64)
        tree.write(b + 1, k, ts, ts, make_batch(rng, n, b))
        tree.flush()
    return keys


def test_block_mode_never_learns(tmp_path) -> None:
    tree = LSMTree(tmp_path, FIELDS, TreeOptions(index="block", background=False, t_wait_s=0))
    keys = _fill(tree)
    for _ in range(20):
        tree.get_many(keys)
    assert tree.analyze() == []
    assert tree.stats()["levels"][0]["index_modes"] == {"block": 3}
    tree.close()


def test_analyzer_learns_busy_sstables_and_skips_idle_ones(tmp_path) -> None:
    opts = TreeOptions(index="auto", background=False, t_wait_s=0.0)
    tree = LSMTree(tmp_path, FIELDS, opts)
    keys = _fill(tree)
    assert tree.analyze() == []  # no lookups yet: no benefit
    st = tree.stats()["analyzer"]
    assert st["skipped"] == 3 and st["learned"] == 0
    assert {d["decision"] for d in st["decisions"]} == {"skip"}
    for _ in range(30):  # the oldest L0 table serves most of these lookups
        tree.get_many(keys[:3000])
    learned = tree.analyze()
    assert learned, tree.stats()["analyzer"]
    st = tree.stats()
    assert st["analyzer"]["learned"] == len(learned)
    assert st["levels"][0]["index_modes"].get("learned") == len(learned)
    d = [x for x in st["analyzer"]["decisions"] if x["decision"] == "learn"]
    assert all(x["benefit_ns"] > x["cost_ns"] for x in d)
    r = tree.get_many(keys)
    assert r.found.all()
    tree.close()


def test_analyzer_waits_t_wait(tmp_path) -> None:
    tree = LSMTree(tmp_path, FIELDS, TreeOptions(index="auto", background=False, t_wait_s=3600))
    keys = _fill(tree)
    for _ in range(30):
        tree.get_many(keys)
    assert tree.analyze() == []
    assert tree.stats()["analyzer"]["pending"] == 3
    tree.close()


def test_a_slow_first_lookup_does_not_make_the_analyzer_learn(tmp_path, monkeypatch) -> None:
    """The first calls of a fresh process pay numba's compilation and page faults (once seen as
    ~95 ms per key); timed, they promise a saving no model delivers."""
    tree = LSMTree(tmp_path, FIELDS, TreeOptions(index="auto", background=False, t_wait_s=0.0))
    keys = _fill(tree, n=50_000, batches=1)  # one sstable: learning costs ~50k x 15 ns
    real = SSTable.lookup
    calls: dict[str, int] = {}
    # A fake clock, so the test does not depend on the machine's load: each of the first two
    # calls "takes" 200 ms (compilation, page faults), every other call 1 us.
    clock = [0]

    def fake_perf_counter_ns() -> int:
        return clock[0]

    def slow_warm_up(self: SSTable, *args: object) -> int:
        calls[self.name] = calls.get(self.name, 0) + 1
        clock[0] += 200_000_000 if calls[self.name] <= 2 else 1_000  # the first calls are slow
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(time, "perf_counter_ns", fake_perf_counter_ns)
    monkeypatch.setattr(SSTable, "lookup", slow_warm_up)
    for k in keys[:6]:
        assert tree.get_many(keys[k == keys]).found.all()
    (t,) = [t for _, t in tree._version.tables()]
    assert t.lookups_positive == 6 and t.keys_block == 6 - WARMUP_CALLS
    assert t.ns_block < 0.1e9 * (6 - WARMUP_CALLS)  # none of the slow calls was timed
    assert tree.analyze() == []
    (d,) = tree.stats()["analyzer"]["decisions"]
    assert d["decision"] == "skip" and d["saving_ns"] < 1e6, d
    tree.close()
