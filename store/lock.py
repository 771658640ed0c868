"""The writer lock: one process writes a root at a time.

`WriterLock` holds `fcntl.flock(LOCK_EX | LOCK_NB)` on `<root>/LOCK`. The kernel releases it when
the holder's file descriptor closes, including when the process dies, so a root whose writer was
killed opens again without cleanup. flock locks belong to the open file description, so a second
FeatureStore in the same process is refused too. The file holds the holder's pid, for messages.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from store.errors import WriterLockedError

LOCK_FILE = "LOCK"


class WriterLock:
    """An exclusive, non-blocking, process-lifetime lock on a store root."""

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root) / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise WriterLockedError(
                f"store root {str(self.path.parent)!r} is open for writing by another process "
                f"(pid {holder}); close it there first — one writer per root"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1
