"""Background: the two daemon threads of one tree — the flusher (frozen memtables -> L0) and the
compactor (compactions and the analyzer), separate so that a long compaction never delays a flush
and the writers waiting for it — and the condition on which writers wait for them (stalls).

The first exception of either thread is kept in `error` and stops that thread; the tree re-raises
it to its callers. Thread-safety: `cond` guards the stall statistics and carries every wake-up;
`stopping` and `error` are set once and read without a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Background"]

log = logging.getLogger(__name__)
_STALL_POLL_S = 0.05  # a stalled writer rechecks at least this often (a missed wake-up is cheap)


class Background:
    """Runs `flush` when woken (or every `interval` s) while `flush_pending()`, and `maintain`
    every `interval` s or when woken; `name` labels the threads."""

    def __init__(
        self,
        name: str,
        interval: float,
        flush: Callable[[], None],
        maintain: Callable[[], None],
        flush_pending: Callable[[], bool],
    ) -> None:
        self.cond = threading.Condition()
        self.stopping = False  # set once by stop()
        self.error: BaseException | None = None  # set once, by the thread that failed
        self.stalls = 0  # GUARDED_BY(cond): writes that waited in wait_while
        self.stall_s = 0.0  # GUARDED_BY(cond)
        self._name = name
        self._interval = interval
        self._work = {True: flush, False: maintain}
        self._flush_pending = flush_pending
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for flusher in (True, False):
            name = f"lsm-{'flush' if flusher else 'compact'}-{self._name}"
            thread = threading.Thread(target=self._run, args=(flusher,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """Wake both threads and every waiting writer."""
        with self.cond:
            self.cond.notify_all()

    def wait_while(self, behind: Callable[[], bool]) -> None:
        """Block while `behind()` (checked under `cond`), counted as one stall if it waited."""
        if not behind():
            return
        t0 = time.perf_counter()
        with self.cond:
            while behind():
                self.cond.wait(_STALL_POLL_S)
            self.stalls += 1
            self.stall_s += time.perf_counter() - t0

    def stop(self) -> None:
        """Ask both threads to stop after their current work, and wait for them."""
        self.stopping = True
        self.wake()
        for thread in self._threads:
            thread.join()

    def _run(self, flusher: bool) -> None:
        work = self._work[flusher]
        while not self.stopping:
            with self.cond:
                if not self.stopping and (not flusher or not self._flush_pending()):
                    self.cond.wait(self._interval)
            if self.stopping:
                break
            try:
                work()
            except Exception as e:  # noqa: BLE001 — kept in `error`, re-raised to the tree's callers
                log.exception("background work of %s failed", self._name)
                self.error = e
                self.wake()
                return
