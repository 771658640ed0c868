"""A process SIGKILLed during flush or compaction leaves files that open to the state at some
durable_seq: exactly the batches up to durable_seq, nothing half-applied."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from online import LSMTree, TreeOptions
from online.manifest import Manifest

from .crash_writer import FIELDS, OPTIONS, batch, expected

ROOT = Path(__file__).resolve().parents[2]


def _assert_state_at_durable_seq(path: Path) -> int:
    tree = LSMTree(path, FIELDS, OPTIONS)
    try:
        d = tree.durable_seq
        model = expected(d)
        t = tree.scan()
        assert t.column("key").to_pylist() == sorted(model)
        assert t.column("v").to_pylist() == [model[k][1] for k in sorted(model)]
        assert t.column("seq").to_pylist() == [model[k][0][2] for k in sorted(model)]
        assert t.column("s").to_pylist() == [str(model[k][1]) for k in sorted(model)]
    finally:
        tree.close()
    # after close (background thread stopped) no temp file is left
    assert not [p.name for p in path.iterdir() if p.name.endswith(".tmp")]
    return d


def _spawn(path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.online.crash_writer", str(path), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", [1, 2, 3, 5, 8, 13, 21])
def test_sigkill_at_a_rename_inside_flush_or_compaction(tmp_path, crash_at) -> None:
    """The child kills itself at its n-th rename: after an sstable is written but before the
    manifest names it, or with a manifest half way to its rename."""
    p = _spawn(tmp_path, str(crash_at))
    out, err = p.communicate(timeout=120)
    assert p.returncode == -9, f"child did not die at rename {crash_at}: {err[-2000:]}"
    acked = [int(line.split()[1]) for line in out.splitlines() if line.startswith("acked")]
    assert acked, "child acked nothing before dying"
    d = _assert_state_at_durable_seq(tmp_path)
    assert d <= acked[-1] + 1


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.9])
def test_sigkill_at_a_random_moment(tmp_path, delay) -> None:
    p = _spawn(tmp_path)
    assert p.stdout is not None
    while not p.stdout.readline().startswith("acked"):  # wait until it is writing
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
    time.sleep(delay)
    p.kill()
    p.communicate(timeout=60)
    _assert_state_at_durable_seq(tmp_path)
    # the tree keeps working after recovery
    _assert_state_at_durable_seq(tmp_path)


def test_durable_seq_never_runs_ahead_of_the_manifest_on_disk(tmp_path, monkeypatch) -> None:
    """The store deletes its commit-log segments once durable_seq covers them, so durable_seq
    must not promise rows whose manifest is still being saved: a SIGKILL inside the save would
    lose them (seen in CI: a segment was trimmed during the save of a flush, then the kill)."""
    opts = TreeOptions(index="block", memtable_bytes=8_000, l0_trigger=2, background=False)
    tree = LSMTree(tmp_path, FIELDS, opts)
    real_save = Manifest.save
    seen: list[tuple[int, int]] = []

    def save(self: Manifest, directory: Path) -> None:
        on_disk = Manifest.load(directory)
        seen.append((tree.durable_seq, on_disk.durable_seq if on_disk else 0))
        real_save(self, directory)
        seen.append((tree.durable_seq, Manifest.load(directory).durable_seq))

    monkeypatch.setattr(Manifest, "save", save)
    try:
        for seq in range(1, 60):
            tree.write(seq, *batch(seq))
        tree.flush()
    finally:
        tree.close()
    assert len(seen) > 10, "the writes should have flushed and compacted several times"
    ahead = [(mem, disk) for mem, disk in seen if mem > disk]
    assert not ahead, f"durable_seq ran ahead of the saved manifest: {ahead[:3]}"
