"""The partition of a row: Kafka's default partitioner over the canonical text of its routing key.

A row goes to partition `(murmur2(utf8(text)) & 0x7fffffff) % P`, where murmur2 is Kafka's
`Utils.murmur2` (seed 0x9747b28c) and `text` is the **canonical key text** of the row's routing
key. A Java producer that sends the same text as its record key with Kafka's default partitioner
(or librdkafka with `partitioner=murmur2_random`) routes the row to the same partition.

Canonical key text (a frozen contract: changing it moves every entity to another partition):
- one int64 key: its decimal text, `-` for negatives, no `+`, no leading zeros (`42`, `-7`);
- one string key: the string itself;
- several keys (a composite, in the view's join key order): for each component, the UTF-8 byte
  length of its text in decimal, `:`, then the text; concatenated with nothing between
  (`(42, "ab")` -> `2:422:ab`; `(-7, "é")` -> `2:-72:é`). The length prefix makes the encoding
  unambiguous for any text, with no escaping. In Java:
  `t.getBytes(UTF_8).length + ":" + t` per component.

A view routes by its join keys; `partition_by: <entity>` routes a composite view by that entity's
join keys alone (so `user_item` lives beside `user_profile`); `replicate: all` sends the whole
batch to every partition. Pure functions and a frozen `Routing`; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cluster._murmur2 import murmur2_many
from cluster.errors import RoutingError
from store.definitions import Entity, FeatureView
from store.placement import REPLICATE_ALL

_POSITIVE = 0x7FFFFFFF  # Kafka's Utils.toPositive mask


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2(data)`: a signed 32-bit int, as Java returns it."""
    out = np.empty(1, dtype=np.int32)
    buf = np.frombuffer(data, dtype=np.uint8) if data else np.zeros(1, dtype=np.uint8)
    murmur2_many(buf, np.array([0, len(data)], dtype=np.int64), out)
    return int(out[0])


def partition_of(text: str, partitions: int) -> int:
    """The partition of one canonical key text (Kafka's default partitioner)."""
    _check_partitions(partitions)
    return (murmur2(text.encode("utf-8")) & _POSITIVE) % partitions


def hash_texts(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """murmur2 of each string's UTF-8 bytes, as int32; one pass of a compiled kernel.

    texts: string or large_string, no nulls. Returns a new int32 array of len(texts).
    """
    arr = _one_chunk(texts)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise RoutingError(f"key texts must be strings, got {arr.type}")
    if arr.null_count:
        raise RoutingError(f"key texts hold {arr.null_count} nulls; a key cannot be null")
    n = len(arr)
    out = np.empty(n, dtype=np.int32)
    if n == 0:
        return out
    bufs = arr.buffers()
    width = np.int32 if pa.types.is_string(arr.type) else np.int64
    offsets = np.frombuffer(bufs[1], dtype=width)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None and bufs[2].size else None
    murmur2_many(data if data is not None else np.zeros(1, dtype=np.uint8), offsets, out)
    return out


def partitions_of(texts: pa.Array | pa.ChunkedArray, partitions: int) -> np.ndarray:
    """The partition (int32 in [0, partitions)) of each canonical key text."""
    _check_partitions(partitions)
    h = hash_texts(texts)
    return (h & np.int32(_POSITIVE)) % np.int32(partitions)


def key_texts(columns: Sequence[pa.Array | pa.ChunkedArray]) -> pa.Array:
    """The canonical key text of each row (module docstring) as a string array.

    columns: the routing key columns in join key order, equal lengths, each int64 (or another
    integer type) or string, no nulls.
    """
    if not columns:
        raise RoutingError("a routing key needs at least one column")
    texts = [_component_text(c) for c in columns]
    if len(texts) == 1:
        return texts[0]
    parts: list[pa.Array | str] = []
    for t in texts:
        parts += [pc.cast(pc.binary_length(t), pa.string()), ":", t]
    return _one_chunk(pc.binary_join_element_wise(*parts, ""))


@dataclass(frozen=True)
class Routing:
    """Where a view's rows go: by the canonical text of `columns`, or to every partition."""

    columns: tuple[str, ...] = ()  # routing key columns, in join key order; empty if replicated
    replicate: bool = False  # True: every partition receives the whole batch

    def __post_init__(self) -> None:
        if self.replicate == bool(self.columns):
            raise RoutingError("a Routing either names key columns or replicates, not both")

    def partitions(self, table: pa.Table, partitions: int) -> np.ndarray:
        """The partition of each row of `table` (int32). A replicated view has none: see split."""
        if self.replicate:
            raise RoutingError("a replicated view goes to every partition; use split()")
        missing = [c for c in self.columns if c not in table.column_names]
        if missing:
            raise RoutingError(f"batch lacks routing key column(s) {missing}")
        return partitions_of(key_texts([table.column(c) for c in self.columns]), partitions)

    def split(self, table: pa.Table, partitions: int) -> dict[int, pa.Table]:
        """{partition: its rows of `table`, in their original order}; only non-empty partitions.

        A replicated view maps every partition to `table` itself (shared, not copied); an
        empty table goes nowhere, as for any view.
        """
        _check_partitions(partitions)
        if self.replicate:
            return dict.fromkeys(range(partitions), table) if table.num_rows else {}
        return split_by_partition(table, self.partitions(table, partitions), partitions)


def view_routing(
    join_keys: Sequence[str],
    entity_join_keys: Mapping[str, Sequence[str]] | None = None,
    partition_by: str | None = None,
    replicate: bool = False,
) -> Routing:
    """The Routing of a view from its definition.

    join_keys: the view's join keys in entity order. entity_join_keys: {entity: its join keys}
    for the view's entities (needed only with partition_by). partition_by: one of the view's
    entities; the view then routes by that entity's join keys, exactly as a view of that entity
    alone would. replicate: `replicate: all`; excludes partition_by.
    """
    if replicate:
        if partition_by is not None:
            raise RoutingError("a view cannot both `replicate: all` and `partition_by` an entity")
        return Routing(replicate=True)
    if not join_keys:
        raise RoutingError("a view needs at least one join key to be partitioned")
    if partition_by is None:
        return Routing(columns=tuple(join_keys))
    entities = entity_join_keys or {}
    if partition_by not in entities:
        raise RoutingError(
            f"partition_by: {partition_by!r} is not an entity of the view; "
            f"use one of {sorted(entities)}"
        )
    keys = tuple(entities[partition_by])
    stray = [k for k in keys if k not in join_keys]
    if not keys or stray:
        raise RoutingError(
            f"partition_by: entity {partition_by!r} has join keys {list(keys)}, "
            f"not all among the view's join keys {list(join_keys)}"
        )
    return Routing(columns=keys)


def routing_of(view: FeatureView, entities: Mapping[str, Entity]) -> Routing:
    """The Routing of a parsed view (its `partition_by` / `replicate`, store/placement.py)."""
    return view_routing(
        view.join_keys,
        {e: entities[e].join_keys for e in view.entities},
        view.partition_by,
        view.replicate,
    )


def routing_in(defs: Mapping[str, Any], view: str) -> Routing | None:
    """The Routing of `view` in a definitions dict (the shape of `GET /v1/definitions`), or
    None when `defs` has no such feature view."""
    found = next((v for v in defs.get("feature_views") or [] if v.get("name") == view), None)
    if found is None:
        return None
    keys = {e["name"]: tuple(e["join_keys"]) for e in defs.get("entities") or []}
    ents = {e: keys[e] for e in found["entities"]}
    return view_routing(
        [k for e in found["entities"] for k in ents[e]],
        ents,
        found.get("partition_by"),
        found.get("replicate") == REPLICATE_ALL,
    )


def split_by_partition(table: pa.Table, parts: np.ndarray, partitions: int) -> dict[int, pa.Table]:
    """{partition: rows of `table` whose parts[i] is that partition}, each in original order.

    parts: int, len(table), values in [0, partitions). One stable sort and one take; the
    per-partition tables are zero-copy slices of that take.
    """
    if len(parts) != table.num_rows:
        raise RoutingError(f"{len(parts)} partitions for {table.num_rows} rows")
    if table.num_rows == 0:
        return {}
    counts = np.bincount(parts, minlength=partitions)
    if len(counts) > partitions or parts.min() < 0:
        raise RoutingError(f"partition numbers must be in [0, {partitions})")
    nonzero = np.flatnonzero(counts)
    if len(nonzero) == 1:
        return {int(nonzero[0]): table}
    order = np.argsort(parts, kind="stable")
    grouped = table.take(pa.array(order))
    starts = np.concatenate(([0], np.cumsum(counts)))
    return {int(p): grouped.slice(int(starts[p]), int(counts[p])) for p in nonzero}


def _component_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    arr = _one_chunk(column)
    if arr.null_count:
        raise RoutingError(f"a key column holds {arr.null_count} nulls; a key cannot be null")
    if pa.types.is_integer(arr.type):
        return _one_chunk(pc.cast(arr, pa.string()))
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr
    raise RoutingError(f"a key column must be int64 or string, got {arr.type}")


def _one_chunk(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values


def _check_partitions(partitions: int) -> None:
    if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
        raise RoutingError(f"partitions must be a positive int, got {partitions!r}")
