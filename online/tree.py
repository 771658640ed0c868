"""LSMTree: the online engine — one learned-index LSM tree per feature view.

memtable -> (freeze) -> L0 sstables -> L1 .. Ln, each level about `size_ratio` x the one above;
each level below L0 is one sorted run. See DESIGN.md "Online engine".

Invariant: for every key, the first container on the lookup path (memtable, frozen memtables, L0
newest first, L1, ..) that holds it holds its latest version, because `write` drops rows older
than the visible version. So `get_many` stops at the first hit.

Threads and locks:
- `_write_lock` serializes writers (write, freeze).
- `_flush_lock` / `_compact_lock` serialize flushes / compactions (background thread or caller).
- `_version_lock` guards installing a new Version + manifest; held for a manifest save only.
- readers (`get_many`, `scan`) take no tree lock: they read `self._version` once and use it; each
  memtable's own lock is held for one kernel call.
Obsolete sstables are unlinked when the last Version (or LookupResult) naming them is gone.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from online import _kernels as K
from online.analyzer import Analyzer
from online.errors import ClosedError, OnlineError, SchemaMismatchError
from online.lookup import LookupResult, feature_arrays
from online.manifest import Manifest
from online.memtable import Memtable
from online.merge import Run, merge_runs
from online.options import TreeOptions
from online.schema import Field, Layout
from online.sstable import SSTable, write_sstable
from online.version import Version

__all__ = ["LSMTree"]

log = logging.getLogger(__name__)
LOCK_NAME = "LOCK"
_NO_HASHES = np.empty((0, 2), dtype=np.uint64)  # table_lookup then hashes each key itself
_HASH_PASS_MIN = 16  # above this many keys, hash them once for all sstables (bloom_hashes)


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
        self._lockfile = open(self.path / LOCK_NAME, "a")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise OnlineError(f"{self.path} is already open by another LSMTree") from None
        try:
            self._open()
        except BaseException:
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)
            self._lockfile.close()
            raise

    # ---- opening --------------------------------------------------------------------------

    def _open(self) -> None:
        self._write_lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._compact_lock = threading.Lock()
        self._version_lock = threading.Lock()
        self._cond = threading.Condition()
        self._closed = False
        self._stop = False
        self._bg_error: BaseException | None = None
        self._analyzer = Analyzer(self.options)
        self._flushes = 0
        self._compactions = 0
        self._stalls = 0
        self._stall_s = 0.0
        self._retired: dict[int, list[int]] = {}  # level -> [positive, negative] of retired tables
        man = Manifest.load(self.path)
        new = self._layout.to_json()
        if man is None:
            man = Manifest(fields=new)
            man.save(self.path)
        elif man.fields != new:
            self._check_fields(man.fields, new)
            man.fields = new
            man.save(self.path)
        self._manifest = man
        live = man.live_files()
        highest = 0
        for p in self.path.iterdir():
            stem = p.name.split(".")[0]
            if stem.isdigit():  # numbers of removed orphans are never reused either
                highest = max(highest, int(stem))
            if p.name.endswith(".tmp") or (p.suffix == ".sst" and p.name not in live):
                log.info("removing orphan file %s", p)
                p.unlink()
        man.next_file = max(man.next_file, highest + 1)
        layouts = {self._layout.nfields: self._layout}
        levels = []
        for metas in man.levels:
            tables = []
            for meta in metas:
                nf = meta["nfields"]
                if nf not in layouts:
                    layouts[nf] = Layout(self._layout.fields[:nf])
                tables.append(self._open_table(meta, layouts[nf]))
            levels.append(tuple(tables))
        self._last_seq = man.durable_seq
        # the newest event and created time stored (bounds for write's no-lookup fast path)
        self._max_ev = self._max_cr = -(2**63)
        for level in levels:
            for t in level:
                self._max_ev = max(self._max_ev, t.max_event_ts)
                self._max_cr = max(self._max_cr, t.max_created_ts)
        # published only after the manifest recording it is on disk (see _flush_frozen)
        self._durable_seq = man.durable_seq
        self._version = Version((self._new_memtable(),), tuple(levels) or ((),),
                                self.options.bloom_last_level)  # fmt: skip
        self._threads: list[threading.Thread] = []
        if self.options.background:
            for flusher in (True, False):
                name = f"lsm-{'flush' if flusher else 'compact'}-{self.path.name}"
                t = threading.Thread(target=self._background, args=(flusher,), name=name,
                                     daemon=True)  # fmt: skip
                t.start()
                self._threads.append(t)

    @staticmethod
    def _check_fields(stored: list, given: list) -> None:
        for i, s in enumerate(stored):
            if i >= len(given):
                raise SchemaMismatchError(
                    f"stored field {s[0]!r} ({s[1]}) is missing from the given fields; fields can "
                    "only be appended"
                )
            if list(given[i]) != list(s):
                raise SchemaMismatchError(
                    f"field #{i}: stored as {s[0]!r} ({s[1]}), given as {given[i][0]!r} "
                    f"({given[i][1]}); fields can only be appended"
                )

    def _open_table(self, meta: dict, layout: Layout) -> SSTable:
        t = SSTable(self.path, meta, layout, self.options.bloom_bits_per_key,
                    self.options.verify_checksums)  # fmt: skip
        if self.options.index == "learned":
            self._learn(t)
        return t

    def _learn(self, t: SSTable) -> None:
        m = t.learn(self.options.delta, fit=self.options.plr_fit)
        self._analyzer.record_build(len(t), m.build_ns)

    # ---- properties -----------------------------------------------------------------------

    @property
    def fields(self) -> list[Field]:
        return list(self._layout.fields)

    @property
    def durable_seq(self) -> int:
        """Highest seq contained in the sstables named by the manifest on disk (0 if none).

        Callers trim their own logs by it, so it never runs ahead of the saved manifest."""
        return self._durable_seq

    @property
    def last_seq(self) -> int:
        """Highest seq written (memtable included)."""
        return self._last_seq

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"LSMTree {self.path} is closed")
        if self._bg_error is not None:
            raise OnlineError(
                f"background flush/compaction of {self.path} failed: {self._bg_error!r}"
            ) from self._bg_error

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
        self._check_open()
        keys = _as_u64(keys)
        ev = np.ascontiguousarray(event_ts, dtype=np.int64)
        cr = np.ascontiguousarray(created_ts, dtype=np.int64)
        if not (len(keys) == len(ev) == len(cr)):
            raise OnlineError(
                f"keys, event_ts and created_ts differ in length ({len(keys)}, {len(ev)}, {len(cr)})"
            )
        self._wait_for_flushes()
        with self._write_lock:
            self._check_open()
            if seq <= self._last_seq:
                raise OnlineError(f"seq {seq} is not above the last written seq {self._last_seq}")
            records, strings = self._layout.pack(ev, cr, seq, features)
            mem = self._version.mems[0]
            if len(keys):
                rows = self._latest_rows(keys, ev, cr)
                if mem.nrows and mem.nrows + len(rows) > mem.capacity:
                    # full before the memory budget (short rows): start a new memtable rather
                    # than grow this one by copying it
                    self._freeze()
                    mem = self._version.mems[0]
                mem.insert(keys, records, rows, strings)
                self._max_ev = max(self._max_ev, int(ev.max()))
                self._max_cr = max(self._max_cr, int(cr.max()))
            mem.max_seq = seq
            self._last_seq = seq
            if mem.nbytes >= self.options.memtable_bytes:
                self._freeze()
        if self._version.mems[1:]:
            if self.options.background:
                with self._cond:
                    self._cond.notify_all()
            else:
                self._flush_frozen()
                self._maintain()

    def _latest_rows(self, keys: np.ndarray, ev: np.ndarray, cr: np.ndarray) -> np.ndarray:
        """Rows of the batch to apply, in batch order: those not older than the version already
        visible in the tree. (Among rows of one key in the batch, the memtable insert keeps the
        latest: it applies them in order and a later row wins ties.)"""
        rows = np.arange(len(keys), dtype=np.int64)
        if int(ev.min()) >= self._max_ev and int(cr.min()) >= self._max_cr:
            # every row is at least as new as anything stored (the common case of a stream
            # written in event-time order): no stored version can win, skip the lookup
            return rows
        recs, loc, _ = self._lookup(self._version, keys, for_write=True)
        found = loc >= 0
        if found.any():
            vev, vcr = recs[:, 0], recs[:, 1]
            keep = ~found | (ev > vev) | ((ev == vev) & (cr >= vcr))
            rows = rows[keep]
        return rows

    def _wait_for_flushes(self) -> None:
        if not self.options.background:
            return
        opts = self.options

        def behind() -> bool:
            v = self._version
            return (
                len(v.mems) > opts.max_immutable or len(v.levels[0]) >= opts.l0_stop_writes
            ) and (self._bg_error is None and not self._closed)

        if not behind():
            return
        t0 = time.perf_counter()
        with self._cond:
            while behind():
                self._cond.wait(0.05)
        self._stalls += 1
        self._stall_s += time.perf_counter() - t0

    def _new_memtable(self) -> Memtable:
        # sized for a full memtable up front: np.zeros maps pages lazily, and growing by copies
        # would cost more than the whole insert
        rows = self.options.memtable_bytes // (self._layout.rowbytes + 8) + 1
        return Memtable(self._layout, capacity=min(rows, 1 << 22))

    def _freeze(self) -> None:
        """Make the active memtable immutable and start a new one (caller holds _write_lock)."""
        with self._version_lock:
            v = self._version
            v.mems[0].frozen = True
            self._version = Version((self._new_memtable(),) + v.mems, v.levels,
                                    self.options.bloom_last_level)  # fmt: skip

    # ---- reads ----------------------------------------------------------------------------

    def get_many(self, keys: np.ndarray) -> LookupResult:
        """Latest rows of `keys` (uint64, any order, duplicates allowed). Thread-safe; never waits
        for a flush or compaction."""
        self._check_open()
        q = _as_u64(keys)
        records, loc, sources = self._lookup(self._version, q)
        return LookupResult(self._layout, records, loc, sources)

    def _lookup(self, v: Version, q: np.ndarray, for_write: bool = False):
        """(records (n, rowwords), loc (n,) = source << 40 | position or -1, sources) of q."""
        layout = self._layout
        n = len(q)
        out = np.zeros((n, layout.rowwords), dtype=np.int64)
        loc = np.empty(n, dtype=np.int64)
        loc.fill(-1)
        todo = np.arange(n, dtype=np.int64)
        ntodo = n
        sources: list[Any] = []
        for mem in v.mems:
            if ntodo == 0:
                break
            source = mem
            if mem.nrows:
                ntodo, source = mem.lookup(q, todo, ntodo, out, loc, len(sources), not for_write)
            sources.append(source)
        perf = time.perf_counter_ns
        hq = _NO_HASHES
        if ntodo > _HASH_PASS_MIN and (for_write or any(b for _, _, b in v.plan)):
            hq = np.empty((n, 2), dtype=np.uint64)
            K.bloom_hashes(q, hq)
        for t, _level, use_bloom in v.plan:
            if ntodo == 0:
                break
            sid = len(sources)
            sources.append(t)
            same = t.layout is layout
            dst = out if same else np.zeros((n, t.layout.rowwords), dtype=np.int64)
            t0 = perf()
            rem = t.lookup(q, todo, ntodo, dst, loc, sid, 1 if use_bloom or for_write else 0, hq)
            dt = perf() - t0
            if not for_write:
                if t._index[0] == K.MODE_LEARNED:
                    t.ns_learned += dt
                    t.keys_learned += ntodo
                else:
                    t.ns_block += dt
                    t.keys_block += ntodo
                t.lookups_positive += ntodo - rem
                t.lookups_negative += rem
            if not same and rem < ntodo:
                idx = np.flatnonzero((loc >> K.LOC_SHIFT) == sid)
                out[idx] = layout.convert(t.layout, dst[idx])
            ntodo = rem
        return out, loc, sources

    def scan(self) -> pa.Table:
        """All live latest rows sorted by key: key, event_timestamp, created_timestamp, seq, then
        the features."""
        self._check_open()
        v = self._version
        runs = [self._mem_run(m) for m in v.mems] + [_table_run(t) for _, t in v.tables()]
        keys, recs, strings = merge_runs(runs, self._layout)
        ts = pa.timestamp("ns", tz="UTC")
        cols = [
            pa.array(keys, type=pa.uint64()),
            pa.array(recs[:, 0], type=ts),
            pa.array(recs[:, 1], type=ts),
            pa.array(recs[:, 2], type=pa.int64()),
        ] + feature_arrays(self._layout, recs, strings)
        names = ["key", "event_timestamp", "created_timestamp", "seq"] + [
            f.name for f in self._layout.fields
        ]
        return pa.Table.from_arrays(cols, names=names)

    def _mem_run(self, mem: Memtable) -> Run:
        keys, recs, strings = mem.sorted_run()
        layout = mem.layout
        return Run(keys, recs, layout, lambda f: strings[layout.index[f.name]])

    # ---- flush ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the memtable to an L0 sstable; durable (manifest fsynced) when it returns."""
        self._check_open()
        with self._write_lock:
            mem = self._version.mems[0]
            if mem.nrows or mem.max_seq > self._manifest.durable_seq:
                self._freeze()
        self._flush_frozen()
        if not self.options.background:
            self._maintain()

    def _flush_frozen(self) -> None:
        """Flush every frozen memtable, oldest first."""
        with self._flush_lock:
            while len(self._version.mems) > 1:
                mem = self._version.mems[-1]
                table = None
                if mem.nrows:
                    keys, recs, strings = mem.sorted_run()
                    meta = write_sstable(self.path, self._next_file(), self._layout, keys, recs,
                                         strings)  # fmt: skip
                    table = SSTable(self.path, meta, self._layout,
                                    self.options.bloom_bits_per_key, verify=False)  # fmt: skip
                    if self.options.index == "learned":
                        self._learn(table)
                with self._version_lock:
                    man = self._manifest
                    if table is not None:
                        man.levels[0].insert(0, table.meta)
                    man.durable_seq = max(man.durable_seq, mem.max_seq)
                    man.save(self.path)
                    # only now: a reader of durable_seq may delete its copy of these rows (the
                    # store trims its commit log by it), and a crash before the save would
                    # otherwise lose them
                    self._durable_seq = man.durable_seq
                    v = self._version
                    l0 = ((table,) if table else ()) + v.levels[0]
                    self._version = Version(v.mems[:-1], (l0,) + v.levels[1:],
                                            self.options.bloom_last_level)  # fmt: skip
                    self._flushes += 1
                log.info("flushed %d rows of %s to %s (durable_seq %d)", mem.nrows, self.path,
                         table.name if table else "-", man.durable_seq)  # fmt: skip
                with self._cond:
                    self._cond.notify_all()

    def _next_file(self) -> int:
        with self._version_lock:
            n = self._manifest.next_file
            self._manifest.next_file += 1
            return n

    # ---- compaction -----------------------------------------------------------------------

    def compact(self, full: bool = False) -> None:
        """Run every pending compaction now, synchronously. full=True first flushes the memtable
        and then merges every sstable into one sorted run at the deepest level."""
        self._check_open()
        if full:
            self.flush()
            with self._compact_lock:
                v = self._version
                tables = v.tables()
                if len(tables) > 1 or (tables and tables[0][0] == 0):
                    deepest = max(1, max(level for level, _ in tables))
                    self._compact_inputs(tables, deepest)
        else:
            self._flush_frozen()
        while self._compact_once():
            pass
        if not self.options.background:
            self.analyze()

    def _pick(self) -> tuple[list[tuple[int, SSTable]], int] | None:
        levels = self._version.levels
        if len(levels[0]) >= self.options.l0_trigger:
            inputs = [(0, t) for t in levels[0]]
            if len(levels) > 1:
                inputs += [(1, t) for t in levels[1]]
            return inputs, 1
        cap = self.options.level1_bytes
        for i in range(1, len(levels)):
            size = sum(t.meta["bytes"] for t in levels[i])
            if size > cap:
                inputs = [(i, t) for t in levels[i]]
                if i + 1 < len(levels):
                    inputs += [(i + 1, t) for t in levels[i + 1]]
                return inputs, i + 1
            cap *= self.options.size_ratio
        return None

    def _compact_once(self) -> bool:
        with self._compact_lock:
            if self._stop:  # closing: finish the running compaction only, leave the rest
                return False
            pick = self._pick()
            if pick is None:
                return False
            self._compact_inputs(*pick)
            return True

    def _compact_inputs(self, inputs: list[tuple[int, SSTable]], out_level: int) -> None:
        """Merge `inputs` (in lookup order: newest first) into one sstable at `out_level` and
        install it (caller holds _compact_lock)."""
        t0 = time.perf_counter()
        keys, recs, strings = merge_runs([_table_run(t) for _, t in inputs], self._layout)
        table = None
        if len(keys):
            meta = write_sstable(self.path, self._next_file(), self._layout, keys, recs, strings)
            table = SSTable(self.path, meta, self._layout, self.options.bloom_bits_per_key,
                            verify=False)  # fmt: skip
            if self.options.index == "learned":
                self._learn(table)
        gone = {t.name for _, t in inputs}
        with self._version_lock:
            man = self._manifest
            while len(man.levels) <= out_level:
                man.levels.append([])
            man.levels = [[m for m in lv if m["file"] not in gone] for lv in man.levels]
            if table is not None:
                man.levels[out_level] = [table.meta]
            while len(man.levels) > 1 and not man.levels[-1]:
                man.levels.pop()
            man.save(self.path)
            v = self._version
            levels = [tuple(t for t in lv if t.name not in gone) for lv in v.levels]
            while len(levels) <= out_level:
                levels.append(())
            if table is not None:
                levels[out_level] = (table,)
            while len(levels) > 1 and not levels[-1]:
                levels.pop()
            self._version = Version(v.mems, tuple(levels), self.options.bloom_last_level)
            self._compactions += 1
        with self._cond:  # writers may be waiting for L0 to shrink
            self._cond.notify_all()
        for level, t in inputs:
            self._analyzer.retire(level, t)
            r = self._retired.setdefault(level, [0, 0])
            r[0] += t.lookups_positive
            r[1] += t.lookups_negative
            t.mark_obsolete()
        log.info("compacted %d sstables into L%d (%d keys) in %.2fs", len(inputs), out_level,
                 len(keys), time.perf_counter() - t0)  # fmt: skip

    # ---- analyzer -------------------------------------------------------------------------

    def analyze(self) -> list[str]:
        """Run Bourbon's cost-benefit analyzer once (index="auto"); returns the sstables learned."""
        self._check_open()
        if self.options.index != "auto":
            return []
        with self._compact_lock:
            todo = self._analyzer.evaluate(self._version.tables())
            for t in todo:
                self._learn(t)
                log.info("analyzer learned %s (%d keys, %d segments)", t.name, len(t),
                         t.model.segments if t.model else 0)  # fmt: skip
        return [t.name for t in todo]

    # ---- background -----------------------------------------------------------------------

    def _maintain(self) -> None:
        while self._compact_once():
            pass
        if self.options.index == "auto":
            self.analyze()

    def _background(self, flusher: bool) -> None:
        """Loop of the flusher thread (frozen memtables -> L0) or of the compactor thread
        (compactions and the analyzer): separate, so a long compaction never delays a flush and
        the writers waiting for it."""
        interval = max(0.01, min(1.0, self.options.t_wait_s / 2 or 0.05))
        while not self._stop:
            with self._cond:
                if not self._stop and (not flusher or len(self._version.mems) == 1):
                    self._cond.wait(interval)
            if self._stop:
                break
            try:
                if flusher:
                    self._flush_frozen()
                else:
                    self._maintain()
            except Exception as e:  # noqa: BLE001 — kept and re-raised to callers by _check_open
                log.exception("background work of %s failed", self.path)
                self._bg_error = e
                with self._cond:
                    self._cond.notify_all()
                return

    # ---- stats and close ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Per level: sstables, keys, bytes, index modes, PLR segments and model bytes, lookups;
        analyzer decisions; flush and compaction counts; durable_seq."""
        v = self._version
        levels = []
        for i, lv in enumerate(v.levels):
            modes: dict[str, int] = {}
            for t in lv:
                modes[t.index_mode] = modes.get(t.index_mode, 0) + 1
            retired = self._retired.get(i, [0, 0])
            levels.append({
                "level": i,
                "sstables": len(lv),
                "keys": sum(len(t) for t in lv),
                "bytes": sum(t.meta["bytes"] for t in lv),
                "index_modes": modes,
                "plr_segments": sum(t.model.segments for t in lv if t.model),
                "model_bytes": sum(t.model.nbytes for t in lv if t.model),
                "fence_bytes": sum(t.fence_bytes for t in lv),
                "bloom_bytes": sum(t.bloom.nbytes for t in lv),
                "lookups_positive": retired[0] + sum(t.lookups_positive for t in lv),
                "lookups_negative": retired[1] + sum(t.lookups_negative for t in lv),
            })  # fmt: skip
        rows = sum(m.nrows for m in v.mems)
        return {
            "index": self.options.index,
            "memtable": {
                "rows": rows,
                "bytes": sum(m.nbytes for m in v.mems),
                "frozen": len(v.mems) - 1,
            },  # fmt: skip
            "levels": levels,
            "analyzer": self._analyzer.snapshot(v.tables()),
            "compactions": self._compactions,
            "flushes": self._flushes,
            "write_stalls": self._stalls,  # writes that waited for a flush or for L0 to shrink
            "write_stall_s": round(self._stall_s, 3),
            "durable_seq": self._durable_seq,
            "last_seq": self._last_seq,
        }

    def close(self) -> None:
        """Flush the memtable, stop the background thread and release the directory."""
        if self._closed:
            return
        try:
            if self._bg_error is None:
                self.flush()
        finally:
            self._stop = True
            with self._cond:
                self._cond.notify_all()
            for t in self._threads:
                t.join()
            self._closed = True
            self._version = Version((self._new_memtable(),), ((),))
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)
            self._lockfile.close()

    def __enter__(self) -> LSMTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LSMTree({str(self.path)!r}, index={self.options.index!r})"


def _table_run(t: SSTable) -> Run:
    return Run(t.keys, t.records, t.layout, t.string_column)


def _as_u64(keys: np.ndarray) -> np.ndarray:
    """keys as a 1-D, C-contiguous, writable uint64 array (the kernels' one signature)."""
    if type(keys) is np.ndarray and keys.dtype == np.uint64 and keys.ndim == 1:
        f = keys.flags
        if f.c_contiguous and f.writeable:
            return keys
    a = np.asarray(keys)
    if a.ndim != 1:
        raise OnlineError(f"keys must be a 1-D array, got shape {a.shape}")
    if a.dtype != np.uint64:
        if a.dtype.kind not in "iu" and len(a):
            raise OnlineError(f"keys must be uint64, got dtype {a.dtype}")
        if a.dtype.kind == "i" and len(a) and a.min() < 0:
            raise OnlineError("keys must be uint64; got negative integers")
        a = a.astype(np.uint64)
    if not a.flags.c_contiguous or not a.flags.writeable:
        a = a.copy()
    return a
