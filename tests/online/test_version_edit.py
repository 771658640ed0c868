"""VersionEdit and VersionSet.log_and_apply: one edit gives the manifest and the live Version the
same levels (flushes in front of L0, compaction outputs replacing their inputs, empty trailing
levels dropped), durable_seq is published only after the manifest is saved, and a failed save
changes nothing in memory."""

from __future__ import annotations

from typing import Any

import pytest

from online import Field
from online.manifest import Manifest
from online.memtable import Memtable
from online.schema import Layout
from online.version import Version
from online.version_edit import VersionEdit
from online.version_set import VersionSet

from .helpers import fake_table as fake

LAYOUT = Layout([Field("x", "int64")])


def _levels_of_version(v: Version) -> list[list[str]]:
    return [[t.name for t in lv] for lv in v.levels]


def _levels_of_manifest(m: Manifest) -> list[list[str]]:
    return [[meta["file"] for meta in lv] for lv in m.levels]


def _set(tmp_path, *levels: list[Any]) -> VersionSet:
    man = Manifest(fields=LAYOUT.to_json(), levels=[[t.meta for t in lv] for lv in levels])
    man.save(tmp_path)
    v = Version((Memtable(LAYOUT),), tuple(tuple(lv) for lv in levels))
    return VersionSet(tmp_path, man, v)


def _both(vs: VersionSet) -> list[list[str]]:
    on_disk = Manifest.load(vs.directory)
    assert on_disk is not None
    assert _levels_of_manifest(on_disk) == _levels_of_version(vs.current)
    return _levels_of_version(vs.current)


def test_a_flush_goes_in_front_of_l0_and_drops_its_memtable(tmp_path) -> None:
    vs = _set(tmp_path, [fake("old")], [fake("r1")])
    vs.current.mems[0].frozen = True
    vs.add_memtable(Memtable(LAYOUT))
    mems = vs.current.mems
    assert len(mems) == 2
    edit = VersionEdit(added=((0, fake("new")),), durable_seq=7, flushed=mems[1])
    vs.log_and_apply(edit)
    assert _both(vs) == [["new", "old"], ["r1"]]
    assert vs.current.mems == mems[:1] and vs.durable_seq == 7
    vs.log_and_apply(VersionEdit(durable_seq=5))  # durable_seq never goes back
    on_disk = Manifest.load(tmp_path)
    assert vs.durable_seq == 7 and on_disk is not None and on_disk.durable_seq == 7


def test_a_compaction_replaces_whole_levels_and_trims_empty_ones(tmp_path) -> None:
    vs = _set(tmp_path, [fake("a"), fake("b")], [fake("r1")], [fake("r2")])
    out = fake("out")
    vs.log_and_apply(VersionEdit(added=((1, out),), removed=frozenset({"a", "b", "r1"})))
    assert _both(vs) == [[], ["out"], ["r2"]]
    vs.log_and_apply(VersionEdit(added=((3, fake("deep")),), removed=frozenset({"out", "r2"})))
    assert _both(vs) == [[], [], [], ["deep"]]
    vs.log_and_apply(VersionEdit(removed=frozenset({"deep"})))  # every row dropped
    assert _both(vs) == [[]]


def test_an_output_level_must_be_empty_once_its_inputs_are_removed(tmp_path) -> None:
    vs = _set(tmp_path, [fake("a")], [fake("r1")])
    with pytest.raises(AssertionError, match="one sorted run"):
        vs.log_and_apply(VersionEdit(added=((1, fake("out")),), removed=frozenset({"a"})))


def test_a_failed_manifest_save_changes_nothing(tmp_path, monkeypatch) -> None:
    vs = _set(tmp_path, [fake("a")])
    before = vs.current

    def fail(self: Manifest, directory) -> None:  # noqa: ANN001
        raise OSError("disk full")

    monkeypatch.setattr(Manifest, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        vs.log_and_apply(VersionEdit(added=((0, fake("b")),), durable_seq=9))
    assert vs.current is before and vs.durable_seq == 0
    monkeypatch.undo()
    vs.log_and_apply(VersionEdit(added=((0, fake("c")),), durable_seq=3))
    assert _both(vs) == [["c", "a"]] and vs.durable_seq == 3


def test_file_numbers_are_never_reused(tmp_path) -> None:
    vs = _set(tmp_path, [])
    numbers = [vs.new_file_number() for _ in range(5)]
    assert numbers == sorted(set(numbers))
    vs.log_and_apply(VersionEdit())
    on_disk = Manifest.load(tmp_path)
    assert on_disk is not None and on_disk.next_file == numbers[-1] + 1
