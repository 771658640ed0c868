"""The consistency audit of one view: the offline latest row per entity vs the online engine.

`audit_view` streams both sides bucket by bucket, so its memory is bounded by one bucket
(`OfflineOptions.latest_bucket_entities` entities), whatever the size of the view:
1. the offline store spills the view's rows into buckets by a hash of the key and yields each
   bucket's latest rows (`OfflineStore.latest_buckets`);
2. the online scan (`LSMTree.scan_chunks`, key order, one version) is split by the same bucket
   function into one temp Arrow IPC file per chunk holding one record batch per bucket, in the
   offline spill's temp directory (removed with it);
3. each bucket pair is compared by `compare_tables`, and the reports are summed.
A view that fits in one bucket is compared in memory with no spill.

`compare_tables` joins both sides on the original entity key (the int64 key decoded from the
online key, or the canonical key text stored online in `_entity_key`), then compares
event_timestamp, created_timestamp, seq and every feature value (NaN equals NaN, null equals
null). Pure function over two Arrow tables. The caller holds ingests for the audit's duration
(FeatureStore.audit); nothing here locks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from offline import OfflineStore
from offline.latest import LatestBuckets, read_bucket, split_file
from online import LSMTree
from store.definitions import FeatureView
from store.keys import ENTITY_KEY_FIELD, key_to_int

MAX_EXAMPLES = 5


def _offline_key(view: FeatureView, table: pa.Table) -> pa.Array:
    """The original key per row: int64, or the canonical text of keys.canonical_keys, built
    with Arrow kernels (no per-row Python: views hold millions of entities)."""
    if not view.hashed:
        return _chunk(table.column(view.keys[0][0])).cast(pa.int64())
    parts = []
    for name, dtype in view.keys:
        col = _chunk(table.column(name))
        if dtype == "int64":
            parts += ["i", pc.cast(col, pa.string()), ";"]
        else:
            col = col.cast(pa.string())
            parts += ["s", pc.cast(pc.utf8_length(col), pa.string()), ":", col]
    return pc.binary_join_element_wise(*parts, "")


def _online_key(view: FeatureView, table: pa.Table) -> pa.Array:
    if not view.hashed:
        return pa.array(key_to_int(_chunk(table.column("key")).to_numpy()))
    return _chunk(table.column(ENTITY_KEY_FIELD)).cast(pa.string())


def _chunk(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def _as_numpy(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid) of a numeric column; vectors as (n, N) arrays, timestamps as int64.
    Values of invalid rows are unspecified."""
    col = _chunk(col)
    valid = np.asarray(col.is_valid())
    t = col.type
    if pa.types.is_timestamp(t):
        col = col.cast(pa.int64())
    if pa.types.is_fixed_size_list(t):
        n, width = len(col), t.list_size
        child = col.values.slice(col.offset * width, n * width)  # null lists keep their slots
        return child.to_numpy(zero_copy_only=False).reshape(n, width), valid
    return col.to_numpy(zero_copy_only=False), valid


def _same(a: pa.Array, b: pa.Array) -> np.ndarray:
    """Rows where a and b agree: both null, or both valid and equal (NaN equals NaN)."""
    if pa.types.is_string(a.type) or pa.types.is_large_string(a.type):
        a, b = a.cast(pa.large_string()), b.cast(pa.large_string())
        av, bv = np.asarray(a.is_valid()), np.asarray(b.is_valid())
        eq = np.asarray(pc.fill_null(pc.equal(a, b), False))
        return (av == bv) & (~av | eq)
    x, av = _as_numpy(a)
    y, bv = _as_numpy(b)
    return (av == bv) & (~av | _equal(x, y))


def _equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    eq = a == b
    if a.dtype.kind == "f":
        eq = eq | (np.isnan(a) & np.isnan(b))
    if eq.ndim > 1:
        eq = eq.all(axis=tuple(range(1, eq.ndim)))
    return np.asarray(eq, dtype=bool)


CHUNK_ROWS = 1 << 19  # online rows per scan chunk (one spill file each); ~one bucket


def audit_view(
    view: FeatureView,
    off: OfflineStore,
    storage: str,
    tree: LSMTree,
    floor_ns: int | None = None,
) -> dict[str, Any]:
    """{"entities", "online_entities", "mismatches", "examples"} of one view: the offline store's
    latest row per entity (view `storage` of `off`) against the online `tree`, in bounded
    memory (see the module docstring). `floor_ns`: rows with an older event time are left out
    on both sides (offline history dropped by retention; store/retention.py)."""
    if floor_ns is not None:
        compare = _since_floor(compare_tables, floor_ns)
        return _audit(view, off, storage, tree, compare)
    return _audit(view, off, storage, tree, compare_tables)


def _since_floor(compare: Any, floor_ns: int) -> Any:
    def since(table: pa.Table) -> pa.Table:
        ts = _chunk(table.column("event_timestamp"))
        ns = ts.cast(pa.int64()) if pa.types.is_timestamp(ts.type) else ts
        return table.filter(pc.greater_equal(ns, floor_ns))

    return lambda view, offline, online: compare(view, since(offline), since(online))


def _audit(
    view: FeatureView, off: OfflineStore, storage: str, tree: LSMTree, compare_tables: Any
) -> dict[str, Any]:
    with off.latest_buckets(storage) as parts:
        if parts.buckets == 1:
            chunks = list(tree.scan_chunks(CHUNK_ROWS))
            online = pa.concat_tables(chunks) if chunks else tree.scan()
            return compare_tables(view, parts.table(0), online)
        files = _spill_online(view, parts, tree, parts.temp_dir / "online")
        empty = tree.scan() if not files else None  # no online rows at all
        total: dict[str, Any] = {
            "entities": 0,
            "online_entities": 0,
            "mismatches": 0,
            "examples": [],
        }
        for b in range(parts.buckets):
            online = empty if empty is not None else read_bucket(files, b)
            report = compare_tables(view, parts.table(b), online)
            for k in ("entities", "online_entities", "mismatches"):
                total[k] += report[k]
            room = MAX_EXAMPLES - len(total["examples"])
            total["examples"] += report["examples"][: max(0, room)]
        return total


def _spill_online(
    view: FeatureView, parts: LatestBuckets, tree: LSMTree, directory: Path
) -> list[Path]:
    """Split the online scan like the offline rows: one file per chunk, batch b = bucket b."""
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i, chunk in enumerate(tree.scan_chunks(CHUNK_ROWS)):
        bucket = parts.bucket_of(_online_key(view, chunk))
        files.append(directory / f"chunk-{i:06d}.arrow")
        split_file(chunk, bucket, parts.buckets, files[-1])
    return files


def compare_tables(view: FeatureView, offline: pa.Table, online: pa.Table) -> dict[str, Any]:
    """{"entities", "online_entities", "mismatches", "examples"} for one view.

    offline: off.latest_per_entity(view); online: tree.scan(). An entity on one side only, or
    any differing column, counts as one mismatch. Views with one int64 key whose sides both come
    sorted by key (the bucketed audit) are joined by a merge, with no sort and no hashing.
    """
    off_key = _offline_key(view, offline)
    on_key = _online_key(view, online)
    pairs = _sorted_pairs(off_key, on_key) if not view.hashed else None
    if pairs is None:
        pairs = _hashed_pairs(off_key, on_key)
    examples: list[dict[str, Any]] = []
    for k in pairs.only_off[:MAX_EXAMPLES].to_pylist():
        examples.append({"entity": k, "problem": "offline only"})
    for k in pairs.only_on[: max(0, MAX_EXAMPLES - len(examples))].to_pylist():
        examples.append({"entity": k, "problem": "online only"})
    alone = len(pairs.only_off) + len(pairs.only_on)
    if pairs.duplicates:
        examples.append({"entity": None, "problem": f"{pairs.duplicates} duplicate entities"})
        return _report(view, offline, online, alone + pairs.duplicates, examples)
    bad = np.zeros(len(pairs.both), dtype=bool)
    bad_cols: dict[int, list[str]] = {}
    columns = [
        ("event_timestamp", "event_timestamp"),
        ("created_timestamp", "created_timestamp"),
        ("_seq", "seq"),
    ]
    columns += [(f.name, f.name) for f in view.features]
    on_names = set(online.column_names)
    for off_name, on_name in columns:
        a = pairs.take_off(_chunk(offline.column(off_name)))
        if on_name in on_names:
            b = pairs.take_on(_chunk(online.column(on_name)))
        else:  # a feature the online side has never seen reads null
            b = pa.nulls(len(pairs.both), a.type)
        same = _same(a, b)
        for i in np.flatnonzero(~same)[:MAX_EXAMPLES].tolist():
            bad_cols.setdefault(i, []).append(off_name)
        bad |= ~same
    for i in np.flatnonzero(bad)[: max(0, MAX_EXAMPLES - len(examples))].tolist():
        examples.append(
            {"entity": pairs.both[i].as_py(), "problem": "differs", "columns": bad_cols.get(i, [])}
        )
    return _report(view, offline, online, int(bad.sum()) + alone, examples)


@dataclass(frozen=True)
class _Pairs:
    """The entities of both sides matched: positions of the common ones on each side (None:
    all rows, in order), their keys, the keys found on one side only, and the duplicate count
    (nonzero: the sides cannot be paired)."""

    off_idx: np.ndarray | None
    on_idx: np.ndarray | None
    both: pa.Array
    only_off: pa.Array
    only_on: pa.Array
    duplicates: int = 0

    def take_off(self, col: pa.Array) -> pa.Array:
        return col if self.off_idx is None else col.take(pa.array(self.off_idx))

    def take_on(self, col: pa.Array) -> pa.Array:
        return col if self.on_idx is None else col.take(pa.array(self.on_idx))


def _sorted_pairs(off_key: pa.Array, on_key: pa.Array) -> _Pairs | None:
    """Merge join of int64 keys sorted ascending and unique on both sides (None otherwise)."""
    off = off_key.to_numpy(zero_copy_only=False)
    on = on_key.to_numpy(zero_copy_only=False)
    if not (_strictly_increasing(off) and _strictly_increasing(on)):
        return None
    if np.array_equal(off, on):  # the common case: one to one, nothing to take
        empty = pa.array([], pa.int64())
        return _Pairs(None, None, off_key, empty, empty)
    pos = np.searchsorted(on, off)
    found = pos < len(on)
    found[found] = on[pos[found]] == off[found]
    off_idx = np.flatnonzero(found)
    on_idx = pos[found]
    on_seen = np.zeros(len(on), dtype=bool)
    on_seen[on_idx] = True
    return _Pairs(
        off_idx, on_idx, pa.array(off[found]), pa.array(off[~found]), pa.array(on[~on_seen])
    )


def _strictly_increasing(a: np.ndarray) -> bool:
    return len(a) < 2 or bool(np.all(a[1:] > a[:-1]))


def _hashed_pairs(off_key: pa.Array, on_key: pa.Array) -> _Pairs:
    """Pairs of any keys: both sides sorted by Arrow, then matched by set membership."""
    off_order = np.asarray(pc.sort_indices(off_key))
    on_order = np.asarray(pc.sort_indices(on_key))
    off_sorted, on_sorted = off_key.take(off_order), on_key.take(on_order)
    in_both_off = np.asarray(pc.is_in(off_sorted, value_set=on_sorted))
    in_both_on = np.asarray(pc.is_in(on_sorted, value_set=off_sorted))
    only_off = off_sorted.filter(pa.array(~in_both_off))
    only_on = on_sorted.filter(pa.array(~in_both_on))
    off_idx = off_order[in_both_off]
    on_idx = on_order[in_both_on]
    both = off_sorted.filter(pa.array(in_both_off))
    if len(off_idx) != len(on_idx):  # duplicate entities on one side
        dup = len(off_idx) - len(pc.unique(off_key)) or len(on_idx) - len(pc.unique(on_key))
        return _Pairs(off_idx, on_idx, both, only_off, only_on, abs(dup))
    return _Pairs(off_idx, on_idx, both, only_off, only_on)


def _report(
    view: FeatureView, offline: pa.Table, online: pa.Table, mismatches: int, examples: list
) -> dict[str, Any]:
    del view
    return {
        "entities": offline.num_rows,
        "online_entities": online.num_rows,
        "mismatches": mismatches,
        "examples": examples,
    }
