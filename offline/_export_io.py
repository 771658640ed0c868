"""Helpers of the export pipeline: an ordered thread-pool map, the result writer, phase clocks
and giving freed memory back to the OS. Stateless (the clock is per export); thread-safe.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

_T = TypeVar("_T")
_R = TypeVar("_R")


def _libc() -> ctypes.CDLL | None:
    """glibc, when it is the C library (for malloc_trim)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


def ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[_T], _R], items: Iterable[_T], ahead: int
) -> Iterator[_R]:
    """`fn` over `items` in the pool, results in order, at most `ahead` in flight."""
    pending: list[Future[_R]] = []
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.pop(0).result()
    for fut in pending:
        yield fut.result()


def release_memory() -> None:
    """Give freed memory back to the OS between phases: Arrow's allocator keeps it, and so does
    glibc for large numpy arrays once its mmap threshold has grown; without this, repeated
    exports in one process grow the RSS by tens of MB each."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def open_writer(out_path: str, schema: pa.Schema) -> pq.ParquetWriter:
    """A zstd Parquet writer for a join result."""
    # dictionary pages only where values repeat by nature (text): hashing every numeric value
    # for a dictionary that overflows anyway doubled the write's cost
    dict_cols = [
        f.name
        for f in schema
        if pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
        or pa.types.is_dictionary(f.type)
    ]
    return pq.ParquetWriter(out_path, schema, compression="zstd", use_dictionary=dict_cols or False)


class Clock:
    """Adds wall and process CPU seconds of a `with clock(phase)` block to `timings`."""

    def __init__(self, timings: dict[str, float]) -> None:
        self._t = timings
        self._phase = ""
        self._wall = self._cpu = 0.0

    def __call__(self, phase: str) -> Clock:
        self._phase = phase
        return self

    def __enter__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        if self._t:
            self._t[self._phase] += time.perf_counter() - self._wall
            self._t[self._phase + "_cpu"] += time.process_time() - self._cpu
