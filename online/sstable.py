"""SSTable: an immutable sorted run of unique uint64 keys and their records, in one Arrow IPC file
(uncompressed), memory-mapped zero copy, with a bloom filter and a block index (fence pointers)
rebuilt on open and, once learned, a PLR model.

File: one record batch with columns `key` uint64, `record` fixed_size_binary(rowbytes) and one
large_string column per string field; schema metadata `rickhouse` = {"fields": [[name, dtype]..]}.
It is written to a temp file, fsynced and renamed; its size and CRC32C are kept in the manifest.

Thread-safety: immutable after open except the index state, which is replaced as a whole tuple
(block -> learned), so a reader sees either the old or the new index, and the lookup statistics
(plain int updates by `Version.lookup`, approximate when threads race). The file is unlinked once it
is obsolete (no longer in the manifest) and no live object refers to it.
"""

from __future__ import annotations

import json
import mmap
import os
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from online import _kernels as K
from online._fsio import file_crc, fsync_dir, fsync_file
from online.bloom import BloomFilter
from online.errors import OnlineCorruptionError
from online.plr import PLRModel
from online.schema import Field, Layout

__all__ = ["SSTable", "write_sstable", "BLOCK_BYTES"]

BLOCK_BYTES = 4096  # bytes of records per fence pointer in `block` mode (LevelDB's block size)
_META_KEY = b"rickhouse"
_EMPTY_SEGS = np.zeros((1, 2), dtype=np.uint64)
_EMPTY_SEGF = _EMPTY_SEGS.view(np.float32)
_EMPTY_I32 = np.zeros(2, dtype=np.int32)
# bytes before a released row range also released (see SSTable.release_rows): the largest
# page-cache folio a fault maps at once (a PMD, 2 MiB on x86-64 and arm64 with 4 KiB pages)
_RELEASE_BEHIND = 2 << 20


_MIN_TS = -(2**63)  # max_event_ts / max_created_ts of an empty table
# lookup calls per index mode that Version.lookup counts but does not time: the first calls pay
# numba's compilation (or cache load) and the page faults of the fresh mapping
WARMUP_CALLS = 2


def write_sstable(
    directory: Path,
    number: int,
    layout: Layout,
    keys: np.ndarray,
    records: np.ndarray,
    strings: dict[int, pa.Array],
) -> dict[str, Any]:
    """Write keys (sorted unique uint64, n >= 1), records ((n, rowwords) int64 in `layout`) and the
    string columns {field index: large_string array of n} durably; returns the manifest entry."""
    n = len(keys)
    name = f"{number:06d}.sst"
    rec_arr = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(layout.rowbytes), n, [None, pa.py_buffer(np.ascontiguousarray(records))]
    )
    cols = [pa.array(keys, type=pa.uint64()), rec_arr]
    names = ["key", "record"]
    for i in layout.string_fields:
        cols.append(strings[i])
        names.append(layout.fields[i].name)
    meta = {_META_KEY: json.dumps({"fields": layout.to_json()}).encode()}
    batch = pa.RecordBatch.from_arrays(cols, names=names)
    schema = batch.schema.with_metadata(meta)
    tmp = directory / (name + ".tmp")
    with pa.OSFile(str(tmp), "wb") as sink:
        with pa.ipc.new_file(sink, schema) as writer:
            writer.write_batch(batch)
    fsync_file(tmp)
    size, crc = file_crc(tmp)
    os.replace(tmp, directory / name)
    fsync_dir(directory)
    seqs = records[:, 2]
    return {
        "file": name,
        "keys": n,
        "bytes": size,
        "crc32c": crc,
        "nfields": layout.nfields,
        "min_key": int(keys[0]),
        "max_key": int(keys[-1]),
        "max_seq": int(seqs.max()) if n else 0,
        "max_event_ts": int(records[:, 0].max()) if n else _MIN_TS,
        "max_created_ts": int(records[:, 1].max()) if n else _MIN_TS,
        "created": time.time(),
    }


def _unlink_if_obsolete(path: str, obsolete: list[bool]) -> None:
    if obsolete[0]:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class SSTable:
    """An open sstable. `meta` is its manifest entry; `layout` the layout it was written with."""

    def __init__(
        self,
        directory: Path,
        meta: dict[str, Any],
        layout: Layout,
        bloom_bits_per_key: int = 10,
        verify: bool = True,
    ) -> None:
        self.meta = meta
        self.name = meta["file"]
        self.path = directory / self.name
        self.layout = layout
        self.created = float(meta.get("created", time.time()))
        self.opened = time.monotonic()
        path = str(self.path)
        if not self.path.exists():
            raise OnlineCorruptionError(path, "sstable named by the manifest is missing")
        if verify:
            size, crc = file_crc(self.path)
            if size != meta["bytes"]:
                raise OnlineCorruptionError(
                    path, f"size {size} bytes, manifest says {meta['bytes']}"
                )
            if crc != meta["crc32c"]:
                raise OnlineCorruptionError(path, "CRC32C mismatch: the file is corrupt")
        try:
            # a private (copy-on-write, never written) mapping: numpy sees writable arrays, which
            # numba's dispatcher types several times faster than read-only ones
            with open(path, "rb") as f:
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            self._base = np.frombuffer(self._mm, dtype=np.uint8)
            reader = pa.ipc.open_file(pa.py_buffer(self._base))
            batch = reader.get_batch(0)
            fields = json.loads(reader.schema.metadata[_META_KEY])
        except (pa.ArrowInvalid, OSError, KeyError, ValueError, TypeError) as e:
            raise OnlineCorruptionError(path, f"not a readable sstable ({e})") from None
        if [list(x) for x in fields["fields"]] != layout.to_json() or batch.num_rows != meta[
            "keys"
        ]:
            raise OnlineCorruptionError(path, "schema or row count differs from the manifest")
        n = batch.num_rows
        self.keys = self._view(batch.column(0), 8, n).view(np.uint64)
        self.records = (
            self._view(batch.column(1), layout.rowbytes, n)
            .view(np.int64)
            .reshape(n, layout.rowwords)
        )
        self._strings = {i: batch.column(layout.fields[i].name) for i in layout.string_fields}
        self.bloom = BloomFilter(self.keys, bloom_bits_per_key)
        t0 = time.perf_counter_ns()
        self.fstride = max(1, BLOCK_BYTES // layout.rowbytes)
        self.fences = np.ascontiguousarray(self.keys[:: self.fstride])
        self.block_build_ns = time.perf_counter_ns() - t0
        # building the filter and fences read every key: let those pages go, or a store's
        # resident memory after open would grow with all its keys (lookups fault back in the
        # pages they read, from the page cache)
        self.release_rows(0, n)
        self.model: PLRModel | None = None
        self.delta = 0
        # (mode, fences, PLR segments, their float32 view, radix, radix shift, radix kind):
        # replaced as a whole by learn(), so a lookup uses one consistent index
        self._index: tuple = self._block_index()
        # K.MODE_BLOCK or K.MODE_LEARNED: the mode of _index, set right after it (a lookup racing
        # learn() may file its timing under the other mode)
        self.index_code = K.MODE_BLOCK
        # lookup statistics, written by Version.lookup without a lock (plain int updates under
        # the GIL: approximate when threads race, which the analyzer tolerates)
        self.lookups_positive = 0
        self.lookups_negative = 0
        self.ns_block = 0
        self.keys_block = 0
        self.ns_learned = 0
        self.keys_learned = 0
        self.untimed_calls = [WARMUP_CALLS, WARMUP_CALLS]  # left per mode, by K.MODE_* code
        self._obsolete = [False]
        weakref.finalize(self, _unlink_if_obsolete, path, self._obsolete)

    def _view(self, arr: pa.Array, width: int, n: int) -> np.ndarray:
        """Writable numpy view of the values of a fixed-width Arrow array inside the mapping."""
        buf = arr.buffers()[1]
        off = buf.address - self._base.ctypes.data + arr.offset * width
        if off < 0 or off + n * width > len(self._base):
            raise OnlineCorruptionError(str(self.path), "column buffer outside the file")
        return self._base[off : off + n * width]

    def __len__(self) -> int:
        return len(self.keys)

    def _newest(self, field: str, column: int) -> int:
        """Newest time of record column `column` (0 event, 1 created): from the manifest entry,
        or read from the records for an sstable written before the entry carried it."""
        v = self.meta.get(field)
        if v is None:
            v = self.meta[field] = int(self.records[:, column].max()) if len(self) else _MIN_TS
        return int(v)

    @property
    def max_event_ts(self) -> int:
        return self._newest("max_event_ts", 0)

    @property
    def max_created_ts(self) -> int:
        return self._newest("max_created_ts", 1)

    @property
    def index_mode(self) -> str:
        return "learned" if self.index_code == K.MODE_LEARNED else "block"

    @property
    def fence_bytes(self) -> int:
        return self.fences.nbytes

    def learn(self, delta: int, radix: str = "auto", fit: str = "optimal") -> PLRModel:
        """Build the PLR model and switch lookups to it (atomically)."""
        m = PLRModel(self.keys, delta, radix, fit)
        self.model = m
        self.delta = int(delta)
        self._index = self._learned_index(m)
        self.index_code = K.MODE_LEARNED
        return m

    def _block_index(self) -> tuple:
        return (K.MODE_BLOCK, self.fences, _EMPTY_SEGS, _EMPTY_SEGF, _EMPTY_I32, 0, 0)

    def _learned_index(self, m: PLRModel) -> tuple:
        return (K.MODE_LEARNED, self.fences, m.segs, m.segf, m.radix, m.shift, m.radix_kind)

    def mark_obsolete(self) -> None:
        """The manifest no longer names this file: delete it when the last reference goes."""
        self._obsolete[0] = True

    def age(self) -> float:
        return time.monotonic() - self.opened

    def lookup(
        self,
        q: np.ndarray,
        todo: np.ndarray,
        ntodo: int,
        out: np.ndarray,
        loc: np.ndarray,
        srcid: int,
        use_bloom: int,
        hq: np.ndarray,
    ) -> int:
        """K.table_lookup of q[todo[:ntodo]] through the current index (see _kernels for the
        outputs); use_bloom: int 0/1, then hq are the keys' K.bloom_hashes (or empty). Returns
        how many keys remain unfound."""
        idx = self._index
        # kept on four lines (the fmt: skip): 20 kernel arguments one per line would hide the call
        return K.table_lookup(
            q, todo, ntodo, self.keys, self.records, idx[0], idx[1], idx[2], idx[3], idx[4],
            idx[5], idx[6], self.fstride, self.delta, self.bloom.words, use_bloom, hq, out, loc,
            srcid,
        )  # fmt: skip

    def release_rows(self, lo: int, hi: int) -> None:
        """Drop the mapped pages of rows [lo, hi) (keys, records, string offsets and data) from
        this process's resident memory: a scan calls it on the rows it has passed. The mapping
        is private and never written, so a page touched again is read back from the file (the
        page cache); nothing is lost, only residency. Pages shared with neighbouring rows go
        too (they fault back in when next read), and so do up to `_RELEASE_BEHIND` bytes before
        row `lo` in each buffer: the kernel maps a whole page-cache folio on a fault, so reading
        the rows of one range maps back pages of the range before it."""
        lo, hi = max(0, lo), min(len(self.keys), hi)
        if lo >= hi:
            return
        self._release(self.keys, lo, hi, 8)
        self._release(self.records.reshape(-1), lo, hi, self.layout.rowbytes)
        for col in self._strings.values():
            width = 8 if pa.types.is_large_string(col.type) else 4
            offsets = col.buffers()[1]
            first = offsets.address + col.offset * width
            self._release_span(first, first + lo * width, first + (hi + 1) * width)
            ends = np.frombuffer(offsets, dtype=np.int64 if width == 8 else np.int32)
            data = col.buffers()[2]
            if data is not None:
                a, b = int(ends[col.offset + lo]), int(ends[col.offset + hi])
                start = data.address + int(ends[col.offset])
                self._release_span(start, data.address + a, data.address + b)

    def _release(self, arr: np.ndarray, lo: int, hi: int, width: int) -> None:
        start = arr.ctypes.data
        self._release_span(start, start + lo * width, start + hi * width)

    def _release_span(self, floor: int, start: int, end: int) -> None:
        """MADV_DONTNEED on the pages holding addresses [start - _RELEASE_BEHIND, end) of the
        mapping, not below address `floor` (the buffer's first byte)."""
        start = max(floor, start - _RELEASE_BEHIND)
        base = self._base.ctypes.data
        a = (start - base) // mmap.PAGESIZE * mmap.PAGESIZE
        b = min(len(self._mm), -(-(end - base) // mmap.PAGESIZE) * mmap.PAGESIZE)
        if 0 <= a < b:
            self._mm.madvise(mmap.MADV_DONTNEED, a, b - a)

    def string_values(self, field: Field, positions: np.ndarray) -> list:
        """Python values (str or None) of string field `field` at record positions."""
        i = self.layout.index.get(field.name)
        if i is None:
            return [None] * len(positions)
        col = self._strings[i]
        if len(positions) <= 4:  # the serving case: scalar reads beat building a take() array
            return [col[int(p)].as_py() for p in positions]
        return col.take(pa.array(positions)).to_pylist()

    def string_column(self, field: Field) -> pa.Array:
        """The whole large_string column of `field` (all null if the table predates it)."""
        i = self.layout.index.get(field.name)
        if i is None:
            return pa.nulls(len(self.keys), pa.large_string())
        col = self._strings[i]
        return col if col.type == pa.large_string() else col.cast(pa.large_string())
