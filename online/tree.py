"""LSMTree: the online engine — one learned-index LSM tree per feature view.

memtable -> (freeze) -> L0 sstables -> L1 .. Ln, each level about `size_ratio` x the one above;
each level below L0 is one sorted run. See DESIGN.md "Online engine". This module coordinates
the write path and its stalls, flushes, compactions, the analyzer, stats and close; beside it:
opening (recovery.py), the structure and read path (version.py), structure changes
(version_edit.py, version_set.py), writes and write stalls (write_path.py), compaction picking (compaction.py), scans (scan.py) and the
background threads (background.py).

Invariant: for every key, the first container on the lookup path (memtable, frozen memtables, L0
newest first, L1, ..) that holds it holds its latest version, because `write` drops rows older
than the visible version. So `get_many` stops at the first hit.

Threads and locks (each mutable field below names the lock that guards it):
- `_write_lock` serializes writers (write, freeze).
- `_flush_lock` / `_compact_lock` serialize flushes / compactions and the analyzer (background
  threads or caller).
- the VersionSet's own lock guards manifest saves and Version installs (see version_set.py).
- `_bg.cond` wakes the background threads and the writers waiting in a stall.
- readers (`get_many`, `scan`) take no tree lock: they read the current Version once and use it;
  each memtable's own lock is held for one kernel call.
Obsolete sstables are unlinked when the last Version (or LookupResult) naming them is gone.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from online import scan as scans
from online import tombstones as tombs
from online import write_path
from online.analyzer import Analyzer
from online.background import Background
from online.compaction import Compaction, full_compaction, pick_compaction
from online.errors import ClosedError, OnlineError
from online.lookup import LookupResult
from online.memtable import Memtable
from online.merge import merge_runs, table_run
from online.options import TreeOptions
from online.recovery import lock_directory, recover, unlock_directory
from online.schema import Field, Layout, as_keys
from online.sstable import SSTable, write_sstable
from online.version import Version
from online.version_edit import VersionEdit
from online.version_set import VersionSet

__all__ = ["LSMTree"]

log = logging.getLogger(__name__)
_MIN_TS = -(2**63)  # no row is older


class LSMTree:
    """A key-value tree of uint64 keys -> latest row; see the module docstring and INTERNAL_API.md."""

    def __init__(
        self, path: str | os.PathLike, fields: Sequence[Field], options: TreeOptions | None = None
    ) -> None:
        self.options = options or TreeOptions()
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        fields = [f if isinstance(f, Field) else Field(*f) for f in fields]
        self._layout = Layout(fields)
        # the field an expired row keeps (TreeOptions.purge_keep_field), or None
        self._keep_field = tombs.keep_field_index(self._layout, self.options.purge_keep_field)
        self._lockfile = lock_directory(self.path)
        try:
            self._open()
        except BaseException:
            unlock_directory(self._lockfile)
            raise

    def _open(self) -> None:
        self._write_lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._compact_lock = threading.Lock()
        self._closed = False  # set once by close()
        self._analyzer = Analyzer(self.options)  # evaluate/retire: GUARDED_BY(_compact_lock)
        self._flushes = 0  # GUARDED_BY(_flush_lock)
        self._compactions = 0  # GUARDED_BY(_compact_lock)
        learn = self._learn if self.options.index == "learned" else None
        man, levels = recover(self.path, self._layout, self.options, learn)
        self._last_seq = man.durable_seq  # GUARDED_BY(_write_lock)
        version = Version((self._new_memtable(),), levels, self.options.bloom_last_level)
        # the newest event and created times stored: bounds for write's no-lookup fast path;
        # GUARDED_BY(_write_lock)
        tables = [t for _, t in version.tables()]
        self._max_ev = max((t.max_event_ts for t in tables), default=_MIN_TS)
        self._max_cr = max((t.max_created_ts for t in tables), default=_MIN_TS)
        # whether any tombstone may be stored: reads then hide them; set once, never reset
        self._has_tombstones = any(t.meta["max_seq"] >= tombs.TOMBSTONE_BIT for t in tables)
        self._purged = {"tombstones": 0, "expired": 0}  # GUARDED_BY(_compact_lock)
        self._versions = VersionSet(self.path, man, version)
        interval = max(0.01, min(1.0, self.options.t_wait_s / 2 or 0.05))
        work = (self._flush_frozen, self._maintain, self._has_frozen)
        self._bg = Background(self.path.name, interval, *work)
        if self.options.background:
            self._bg.start()

    def _learn(self, t: SSTable) -> None:
        m = t.learn(self.options.delta, fit=self.options.plr_fit)
        self._analyzer.record_build(len(t), m.build_ns)

    # ---- properties -----------------------------------------------------------------------

    @property
    def fields(self) -> list[Field]:
        return list(self._layout.fields)

    @property
    def durable_seq(self) -> int:
        """Highest seq contained in the sstables named by the manifest on disk (0 if none);
        callers trim their own logs by it, so it never runs ahead of the saved manifest."""
        return self._versions.durable_seq

    @property
    def last_seq(self) -> int:
        """Highest seq written (memtable included)."""
        return self._last_seq

    @property
    def _version(self) -> Version:
        """The current Version (tests and benchmarks inspect it)."""
        return self._versions.current

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"LSMTree {self.path} is closed")
        if self._bg.error is not None:
            problem = f"background flush/compaction of {self.path} failed: {self._bg.error!r}"
            raise OnlineError(problem) from self._bg.error

    # ---- writes ---------------------------------------------------------------------------

    def write(
        self,
        seq: int,
        keys: np.ndarray,
        event_ts: np.ndarray,
        created_ts: np.ndarray,
        features: pa.RecordBatch | pa.Table,
    ) -> None:
        """Apply one validated batch with sequence number `seq` (> every earlier seq). Keeps the
        latest version per key under (event_ts, created_ts, seq, position in the batch)."""
        write_path.write(self, seq, keys, event_ts, created_ts, features)

    def delete(
        self,
        seq: int,
        keys: np.ndarray,
        event_ts: np.ndarray,
        created_ts: np.ndarray,
        features: pa.RecordBatch | pa.Table | None = None,
    ) -> None:
        """Write tombstones of `keys` (unique) with sequence number `seq` (> every earlier seq);
        see online/write_path.py `delete`."""
        write_path.delete(self, seq, keys, event_ts, created_ts, features)

    def _new_memtable(self) -> Memtable:
        # sized for a full memtable up front: np.zeros maps pages lazily, and growing by copies
        # would cost more than the whole insert
        rows = self.options.memtable_bytes // (self._layout.rowbytes + 8) + 1
        return Memtable(self._layout, capacity=min(rows, 1 << 22))

    def _has_frozen(self) -> bool:
        return len(self._versions.current.mems) > 1

    def _freeze(self) -> None:
        """Make the active memtable immutable and start a new one (caller holds _write_lock)."""
        self._versions.current.mems[0].frozen = True
        self._versions.add_memtable(self._new_memtable())

    # ---- reads ----------------------------------------------------------------------------

    def get_many(self, keys: np.ndarray) -> LookupResult:
        """Latest rows of `keys` (uint64, any order, duplicates allowed). Thread-safe; never waits
        for a flush or compaction."""
        self._check_open()
        q = as_keys(keys)
        records, loc, sources = self._versions.current.lookup(self._layout, q)
        if self._has_tombstones:
            tombs.hide_tombstones(self._layout, records, loc)
        return LookupResult(self._layout, records, loc, sources)

    def scan(self) -> pa.Table:
        """All live latest rows sorted by key: key, event_timestamp, created_timestamp, seq, then
        the features."""
        self._check_open()
        return tombs.live_rows(scans.scan(self._versions.current, self._layout))

    def scan_chunks(self, rows: int = 1 << 20) -> Iterator[pa.Table]:
        """The rows of `scan()`, in key order, as tables of about `rows` rows each (a key range
        per table), all read from the one version current at the call: memory is bounded by
        `rows` (plus the memtables), whatever the size of the tree."""
        self._check_open()
        return tombs.live_chunks(scans.scan_chunks(self._versions.current, self._layout, rows))

    # ---- flush ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the memtable to an L0 sstable; durable (manifest fsynced) when it returns."""
        self._check_open()
        with self._write_lock:
            mem = self._versions.current.mems[0]
            if mem.nrows or mem.max_seq > self._versions.durable_seq:
                self._freeze()
        self._flush_frozen()
        if not self.options.background:
            self._maintain()

    def _flush_frozen(self) -> None:
        """Flush every frozen memtable, oldest first."""
        with self._flush_lock:
            while self._has_frozen():
                mem = self._versions.current.mems[-1]
                table = self._write_table(*mem.sorted_run()) if mem.nrows else None
                added = ((0, table),) if table is not None else ()
                # durable_seq is published once the manifest naming the table is saved: a reader
                # of durable_seq may delete its copy of these rows (the store trims its commit
                # log by it), and a crash before the save would otherwise lose them
                self._versions.log_and_apply(
                    VersionEdit(added=added, durable_seq=mem.max_seq, flushed=mem)
                )
                self._flushes += 1
                name = table.name if table else "-"
                seq = self._versions.durable_seq
                log.info(
                    "flushed %d rows of %s to %s (durable_seq %d)", mem.nrows, self.path, name, seq
                )
                self._bg.wake()

    def _write_table(self, keys: np.ndarray, recs: np.ndarray, strings: dict) -> SSTable:
        """Write a sorted run (keys unique, n >= 1) as a new sstable and open it (learned up front
        when the index is "learned"); the manifest does not name it yet."""
        number = self._versions.new_file_number()
        meta = write_sstable(self.path, number, self._layout, keys, recs, strings)
        table = SSTable(self.path, meta, self._layout, self.options.bloom_bits_per_key, False)
        if self.options.index == "learned":
            self._learn(table)
        return table

    # ---- compaction -----------------------------------------------------------------------

    def compact(self, full: bool = False) -> None:
        """Run every pending compaction now, synchronously. full=True first flushes the memtable
        and then merges every sstable into one sorted run at the deepest level."""
        self._check_open()
        if full:
            self.flush()
            with self._compact_lock:
                c = full_compaction(self._versions.current)
                if c is None and (self._has_tombstones or self.options.purge_ttl_ns):
                    c = tombs.rewrite_all(self._versions.current.tables())
                if c is not None:
                    self._compact(c)
        else:
            self._flush_frozen()
        while self._compact_once():
            pass
        if not self.options.background:
            self.analyze()

    def _compact_once(self) -> bool:
        with self._compact_lock:
            if self._bg.stopping:  # closing: finish the running compaction only, leave the rest
                return False
            c = pick_compaction(self._versions.current, self.options)
            if c is None:
                return False
            self._compact(c)
            return True

    def _compact(self, c: Compaction) -> None:
        """Merge c's inputs into one sstable at c.output_level and install it (caller holds
        _compact_lock)."""
        t0 = time.perf_counter()
        keys, recs, strings = merge_runs([table_run(t) for _, t in c.inputs], self._layout)
        keys, recs, strings = self._purge(c, keys, recs, strings)
        table = self._write_table(keys, recs, strings) if len(keys) else None
        self._versions.log_and_apply(c.edit(table))
        self._compactions += 1
        self._bg.wake()  # writers may be waiting for L0 to shrink
        for level, t in c.inputs:
            self._analyzer.retire(level, t)
            t.mark_obsolete()
        n, s = len(c.inputs), time.perf_counter() - t0
        log.info(
            "compacted %d sstables into L%d (%d keys) in %.2fs", n, c.output_level, len(keys), s
        )

    def _purge(self, c: Compaction, keys: np.ndarray, recs: np.ndarray, strings: dict) -> tuple:
        """A merge's output without tombstones and expired rows, when it writes the deepest
        level (caller holds _compact_lock); see online/tombstones.py."""
        below = self._versions.current.levels[c.output_level + 1 :]
        if any(below):
            return keys, recs, strings
        ttl = self.options.purge_ttl_ns
        expire = time.time_ns() - ttl if ttl > 0 else None
        keys, recs, strings, dropped, expired = tombs.purge_run(
            self._layout, keys, recs, strings, True, expire, self._keep_field
        )
        self._purged["tombstones"] += dropped
        self._purged["expired"] += expired
        return keys, recs, strings

    # ---- analyzer -------------------------------------------------------------------------

    def analyze(self) -> list[str]:
        """Run Bourbon's cost-benefit analyzer once (index="auto"); returns the sstables learned."""
        self._check_open()
        if self.options.index != "auto":
            return []
        with self._compact_lock:
            todo = self._analyzer.evaluate(self._versions.current.tables())
            for t in todo:
                self._learn(t)
                segments = t.model.segments if t.model else 0
                log.info("analyzer learned %s (%d keys, %d segments)", t.name, len(t), segments)
        return [t.name for t in todo]

    # ---- background -----------------------------------------------------------------------

    def _maintain(self) -> None:
        while self._compact_once():
            pass
        if self.options.index == "auto":
            self.analyze()

    # ---- stats and close ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Per level: sstables, keys, bytes, index modes, PLR segments and model bytes, lookups;
        analyzer decisions; flush and compaction counts; durable_seq."""
        v = self._versions.current
        return {
            "index": self.options.index,
            "memtable": {
                "rows": sum(m.nrows for m in v.mems),
                "bytes": sum(m.nbytes for m in v.mems),
                "frozen": len(v.mems) - 1,
            },
            "levels": v.level_stats(self._analyzer.retired_lookups),
            "analyzer": self._analyzer.snapshot(v.tables()),
            "compactions": self._compactions,
            "flushes": self._flushes,
            "write_stalls": self._bg.stalls,  # writes that waited for a flush or L0 to shrink
            "write_stall_s": round(self._bg.stall_s, 3),
            "durable_seq": self._versions.durable_seq,
            "last_seq": self._last_seq,
            "purged": dict(self._purged),  # tombstones and expired rows dropped by compaction
        }

    def close(self) -> None:
        """Flush the memtable, stop the background thread and release the directory."""
        if self._closed:
            return
        try:
            if self._bg.error is None:
                self.flush()
        finally:
            self._bg.stop()
            self._closed = True
            self._versions.release(self._new_memtable())
            unlock_directory(self._lockfile)

    def __enter__(self) -> LSMTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LSMTree({str(self.path)!r}, index={self.options.index!r})"
