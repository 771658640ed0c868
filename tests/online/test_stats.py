"""stats() and the cost-benefit analyzer of index="auto"."""

from __future__ import annotations

import numpy as np

from online import LSMTree, TreeOptions

from .helpers import FIELDS, make_batch


def _fill(tree: LSMTree, n: int = 3000, batches: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    keys = rng.choice(2**40, n * batches, replace=False).astype(np.uint64)
    for b in range(batches):
        k = keys[b * n : (b + 1) * n]
        ts = np.zeros(n, np.int64)
        tree.write(b + 1, k, ts, ts, make_batch(rng, n, b))
        tree.flush()
    return keys


def test_stats_describe_levels_models_and_lookups(tmp_path) -> None:
    tree = LSMTree(tmp_path, FIELDS, TreeOptions(index="learned", background=False))
    keys = _fill(tree)
    tree.get_many(keys[:100])
    tree.get_many(keys[:100] + np.uint64(2**41))  # misses
    st = tree.stats()
    assert st["index"] == "learned" and st["flushes"] == 3 and st["durable_seq"] == 3
    l0 = st["levels"][0]
    assert l0["sstables"] == 3 and l0["keys"] == len(keys)
    assert l0["index_modes"] == {"learned": 3}
    assert l0["plr_segments"] >= 3 and l0["model_bytes"] > 0
    assert l0["lookups_positive"] == 100 and l0["lookups_negative"] >= 100
    tree.compact(full=True)
    st = tree.stats()
    assert st["compactions"] == 1
    assert st["levels"][1]["keys"] == len(keys) and st["levels"][0]["sstables"] == 0
    assert st["levels"][0]["lookups_positive"] == 100  # retired tables keep their counts
    tree.close()


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
