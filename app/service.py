"""The open FeatureStore of a server process, its thread pools and its definitions snapshot.

The snapshot (`definitions`, parsed by `store.Definitions`, and the join key dtypes derived from
it) is replaced whole, in one reference assignment, after open and after every apply; handlers
read whichever snapshot is current, without locks.

Blocking store calls never run on the event loop: online lookups go to a small read pool, and
ingests, exports, audits and compactions to a separate write pool, so heavy work can never take
the threads that online lookups need. The store itself is thread-safe (INTERNAL_API.md).

Background threads run at a lower CPU priority: the idle scheduling policy on Linux, else a
higher nice value (settings.background_idle, settings.background_nice).

Opening: `open()` tries once; if another process holds the writer lock, the service stays
unavailable (503 everywhere, /health included) and retries in the background until it gets the
lock. A damaged file (`store.CorruptionError`) leaves the service unavailable for good: 503
everywhere, /health included, with the message naming the file and what to do (retrying cannot
repair it; an operator restarts after the repair). Any other failure to open propagates.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

from app.errors import UnavailableError
from app.payloads import key_dtypes
from app.settings import Settings
from offline import OfflineOptions
from store import Definitions, FeatureStore
from store.errors import CorruptionError, WriterLockedError

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_OPEN_S = 2.0


def lower_thread_priority(nice: int, idle: bool = False) -> None:
    """Lower the calling thread's CPU priority; Linux applies it per thread, and the threads it
    starts inherit it. `idle`: the SCHED_IDLE policy (the thread runs only on CPU time no normal
    thread wants, and a waking normal thread preempts it at once); else, or where SCHED_IDLE is
    refused, the nice value `nice` (0 = no change)."""
    tid = threading.get_native_id()
    if idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            return
        except OSError as exc:
            log.warning("cannot give background threads the idle policy (%s); using nice", exc)
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError as exc:  # not permitted somewhere: serve anyway, say so once per thread
        log.warning("cannot lower the priority of background threads: %s", exc)


class DefinitionsSnapshot(NamedTuple):
    """The applied definitions as request handling reads them. Immutable."""

    definitions: Definitions
    key_dtypes: dict[str, str]  # join key -> "int64" | "string" (payloads.key_dtypes)


class StoreService:
    """Owns (or borrows) one FeatureStore; see the module docstring for threading."""

    def __init__(self, settings: Settings, store: FeatureStore | None = None) -> None:
        self.settings = settings
        # Opening serializes on _lock; readers take these references without it (each is
        # replaced whole, in one assignment).
        self._store = store  # GUARDED_BY(_lock) for writes
        self._owns_store = store is None
        self.unavailable_reason: str | None = None if store is not None else "store not open yet"
        self._snapshot = DefinitionsSnapshot(Definitions(), {})  # replaced by refresh_definitions
        self.read_pool = ThreadPoolExecutor(settings.read_threads, thread_name_prefix="rh-read")
        self.write_pool = ThreadPoolExecutor(
            settings.write_threads,
            thread_name_prefix="rh-write",
            initializer=lower_thread_priority,
            initargs=(settings.background_nice, settings.background_idle),
        )
        self._retry_task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        if store is not None:
            self.refresh_definitions()

    @property
    def store(self) -> FeatureStore:
        """The open store, or 503 naming why it is not open."""
        store = self._store
        if store is None:
            raise UnavailableError(f"the store is not available: {self.unavailable_reason}")
        return store

    @property
    def snapshot(self) -> DefinitionsSnapshot:
        """The current definitions snapshot, or 503 naming why the store is not open (the
        snapshot of a store that is not open would make every name look unknown)."""
        if self._store is None:
            raise UnavailableError(f"the store is not available: {self.unavailable_reason}")
        return self._snapshot

    @property
    def is_open(self) -> bool:
        return self._store is not None

    def stats_or_none(self) -> dict[str, Any] | None:
        """`FeatureStore.stats()`, or None while the store is not open (blocking)."""
        store = self._store
        return None if store is None else store.stats()

    def refresh_definitions(self) -> None:
        """Re-read the definitions (after open and after every apply)."""
        defs = Definitions.from_dict(self.store.definitions())
        self._snapshot = DefinitionsSnapshot(defs, key_dtypes(defs))

    def _open_blocking(self) -> None:
        with self._lock:
            if self._store is not None:
                return
            store = FeatureStore(
                self.settings.root,
                online_index=self.settings.online_index,
                delta=self.settings.delta,
                offline_options=OfflineOptions(snapshot_grace_s=self.settings.snapshot_grace_s),
            )
            self._store = store
            self.unavailable_reason = None
            self.refresh_definitions()
            log.info("store open at %s (last seq %s)", self.settings.root, store.last_seq)

    async def open(self) -> None:
        """Open the store off the event loop; on a held writer lock, keep retrying in the background."""
        if self._store is not None:
            return
        try:
            await self.run_write(self._open_blocking)
        except WriterLockedError as exc:
            self.unavailable_reason = str(exc)
            log.error("%s; serving 503 and retrying every %.0f s", exc, RETRY_OPEN_S)
            self._retry_task = asyncio.create_task(self._retry_open())
        except CorruptionError as exc:
            self.unavailable_reason = str(exc)
            log.error("cannot open the store: %s; serving 503", exc)

    async def _retry_open(self) -> None:
        while self._store is None:
            await asyncio.sleep(RETRY_OPEN_S)
            try:
                await self.run_write(self._open_blocking)
            except WriterLockedError as exc:
                self.unavailable_reason = str(exc)
            except CorruptionError as exc:
                self.unavailable_reason = str(exc)
                log.error("cannot open the store: %s; serving 503", exc)
                return

    async def close(self) -> None:
        if self._retry_task is not None:
            self._retry_task.cancel()
        store, self._store = self._store, None
        self.unavailable_reason = "the server is shutting down"
        if store is not None and self._owns_store:
            await asyncio.get_running_loop().run_in_executor(None, store.close)
        self.read_pool.shutdown(wait=False)
        self.write_pool.shutdown(wait=True)

    async def run_read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a short blocking call (an online lookup) in the read pool."""
        return await asyncio.get_running_loop().run_in_executor(self.read_pool, fn, *args)

    async def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a long blocking call (ingest, export, audit, compaction) in the write pool."""
        return await asyncio.get_running_loop().run_in_executor(self.write_pool, fn, *args)
