"""The writer lock: a second writer (another process, or another opener here) is refused;
the lock dies with its process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from store.errors import WriterLockedError
from store.lock import WriterLock

HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from store.lock import WriterLock
    lock = WriterLock(sys.argv[1])
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_second_writer_in_another_process_is_refused_until_the_holder_dies(tmp_path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(WriterLockedError, match=f"pid {child.pid}"):
            WriterLock(tmp_path)
    finally:
        child.kill()
        child.wait()
    WriterLock(tmp_path).release()  # no cleanup needed after a killed writer


def test_second_opener_in_the_same_process_is_refused_and_release_frees_it(tmp_path) -> None:
    first = WriterLock(tmp_path)
    with pytest.raises(WriterLockedError, match="one writer per root"):
        WriterLock(tmp_path)
    first.release()
    WriterLock(tmp_path).release()


STORE_HOLDER = textwrap.dedent(
    """
    import sys, time
    from store import FeatureStore
    fs = FeatureStore(sys.argv[1])
    print("open", flush=True)
    time.sleep(60)
    """
)


def test_feature_store_refuses_a_second_writer_process_and_reopens_after_a_kill(tmp_path) -> None:
    from store import FeatureStore

    root = tmp_path / "root"
    child = subprocess.Popen(
        [sys.executable, "-c", STORE_HOLDER, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "open"
        with pytest.raises(WriterLockedError, match="open for writing by another process"):
            FeatureStore(root)
    finally:
        child.kill()
        child.wait()
    with FeatureStore(root) as fs:  # the killed writer's lock died with it
        assert fs.last_seq == 0
        with pytest.raises(WriterLockedError):
            FeatureStore(root)
