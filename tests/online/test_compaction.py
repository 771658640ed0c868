"""pick_compaction and full_compaction on hand-built Versions: L0 by file count, deeper levels by
bytes against level1_bytes x size_ratio^(i-1), shallow levels first, whole levels as inputs in
lookup order."""

from __future__ import annotations

from typing import Any

from online import TreeOptions
from online.compaction import Compaction, full_compaction, pick_compaction
from online.version import Version

from .helpers import fake_table as fake

OPTS = TreeOptions(l0_trigger=3, level1_bytes=1000, size_ratio=10, background=False)


def _version(*levels: list[Any]) -> Version:
    return Version((), tuple(tuple(lv) for lv in levels))


def _names(c: Compaction | None) -> tuple[list[tuple[int, str]], int] | None:
    return None if c is None else ([(lv, t.name) for lv, t in c.inputs], c.output_level)


def test_nothing_to_do_within_bounds() -> None:
    assert pick_compaction(_version([]), OPTS) is None
    v = _version([fake("a"), fake("b")], [fake("c", 1000)], [fake("d", 10_000)])
    assert pick_compaction(v, OPTS) is None


def test_l0_at_its_trigger_merges_into_l1_with_all_of_l1() -> None:
    l0 = [fake("n3"), fake("n2"), fake("n1")]  # newest first
    assert _names(pick_compaction(_version(l0), OPTS)) == ([(0, "n3"), (0, "n2"), (0, "n1")], 1)
    v = _version(l0, [fake("r1")], [fake("r2", 50_000)])
    assert _names(pick_compaction(v, OPTS)) == ([(0, "n3"), (0, "n2"), (0, "n1"), (1, "r1")], 1)


def test_a_level_over_capacity_merges_into_the_next() -> None:
    v = _version([fake("a")], [fake("r1", 1001)])
    assert _names(pick_compaction(v, OPTS)) == ([(1, "r1")], 2)
    v = _version([], [fake("r1", 500)], [fake("r2", 10_001)], [fake("r3", 5)])
    assert _names(pick_compaction(v, OPTS)) == ([(2, "r2"), (3, "r3")], 3)


def test_the_shallowest_need_comes_first() -> None:
    v = _version(
        [fake("a"), fake("b"), fake("c")],
        [fake("r1", 5000)],
        [fake("r2", 10**9)],
    )
    assert _names(pick_compaction(v, OPTS)) == ([(0, "a"), (0, "b"), (0, "c"), (1, "r1")], 1)
    v = _version([], [fake("r1", 5000)], [fake("r2", 10**9)])
    assert _names(pick_compaction(v, OPTS)) == ([(1, "r1"), (2, "r2")], 2)


def test_full_compaction_merges_everything_into_the_deepest_level() -> None:
    assert full_compaction(_version([])) is None
    assert full_compaction(_version([], [fake("r1")])) is None  # already one run
    assert full_compaction(_version([], [], [fake("r2")])) is None
    assert _names(full_compaction(_version([fake("a")]))) == ([(0, "a")], 1)
    v = _version([fake("a")], [], [fake("r2")])
    assert _names(full_compaction(v)) == ([(0, "a"), (2, "r2")], 2)


def test_the_edit_of_a_compaction_replaces_its_inputs() -> None:
    v = _version([fake("a"), fake("b")], [fake("r1")])
    c = full_compaction(v)
    assert c is not None
    out = fake("out")
    edit = c.edit(out)
    assert edit.removed == {"a", "b", "r1"} and edit.added == ((1, out),)
    assert c.edit(None).added == ()  # every row dropped: nothing written
