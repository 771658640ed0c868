"""The router's read plan and merge: entity rows scattered by partition, answers merged in order.

A Feast `/get-online-features` request may read views of different routing keys. For each
routing group (the distinct routing keys of the views read: a view's join keys, or its
`partition_by` entity's; a replicated view joins every group; cluster/tablets.py `group_views`)
every request row has one partition; the router sends each replica the rows of the partitions it
chose it for, with `route_by` naming the group, and takes from each answer the columns the node
says are valid for that group (the join key columns and the group's views). A request of
replicated views only is one group pinned to one partition (`route_by=@<p>`): one replica
answers it whole, at the router's acknowledged position of that partition. `merge` puts the
answers' rows back in request order; the result is what a single root answers for the whole
request.

Pure functions over plain data; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from cluster.errors import RoutingError
from cluster.key_hash import small_partitions
from cluster.partitioning import key_texts, partitions_of
from cluster.tablets import PINNED, REPLICATED, group_views


@dataclass(frozen=True)
class GroupRows:
    """The partition of every request row for one routing group (join keys `keys`)."""

    keys: tuple[str, ...]  # empty: unroutable (unknown view, missing key): any node answers
    parts: np.ndarray  # int32 partition per request row


@dataclass(frozen=True)
class Answer:
    """One node's JSON answer for the request rows `rows`; `columns` None means all."""

    rows: np.ndarray  # int64 row indices into the request, ascending
    content: bytes  # the node's Feast JSON
    columns: list[int] | None


def plan(
    defs: Mapping[str, Any],
    features: str | Sequence[str],
    entities: Mapping[str, Sequence[Any]],
    partitions: int,
) -> list[GroupRows]:
    """The routing groups of a request and each row's partition in each.

    entities: {join key: values} with keys typed as the definitions say (ints, strings). A
    group whose keys are missing or not hashable keys (nulls, floats) comes back with empty
    keys: the request then goes whole to one node, which names the problem as a root would.
    """
    n = len(next(iter(entities.values()))) if entities else 0
    groups = group_views(defs, features)
    if REPLICATED in groups:
        return [_pinned(defs, groups[REPLICATED], entities, n, partitions)]
    out: list[GroupRows] = []
    for keys in groups:
        if not keys or any(k not in entities for k in keys):
            return [GroupRows((), np.zeros(n, np.int32))]
        small = small_partitions([entities[k] for k in keys], partitions)  # a few rows: scalar
        if small is not None:
            out.append(GroupRows(keys, small))
            continue
        try:
            cols = [pa.array(list(entities[k])) for k in keys]
            parts = partitions_of(key_texts(cols), partitions) if n else np.zeros(0, np.int32)
        except (RoutingError, pa.ArrowException):
            return [GroupRows((), np.zeros(n, np.int32))]
        out.append(GroupRows(keys, parts))
    return out


def _pinned(
    defs: Mapping[str, Any],
    views: frozenset[str],
    entities: Mapping[str, Sequence[Any]],
    n: int,
    partitions: int,
) -> GroupRows:
    """A request of replicated views only: all its rows to one tablet, the partition of its
    first row's key under the first such view's join keys (requests of different entities
    spread over the partitions); unroutable (any node names the problem) without that key."""
    entity_keys = {e["name"]: e["join_keys"] for e in defs.get("entities") or []}
    first = next(v for v in defs.get("feature_views") or [] if v["name"] in views)
    keys = [k for e in first["entities"] for k in entity_keys[e]]
    if any(k not in entities or not len(entities[k]) for k in keys):
        return GroupRows((), np.zeros(n, np.int32))
    try:
        text = key_texts([pa.array([entities[k][0]]) for k in keys])
        p = int(partitions_of(text, partitions)[0])
    except (RoutingError, pa.ArrowException):
        return GroupRows((), np.zeros(n, np.int32))
    return GroupRows((f"{PINNED}{p}",), np.full(n, p, np.int32))


def sub_entities(entities: Mapping[str, Sequence[Any]], rows: np.ndarray) -> dict[str, list]:
    """The request's entity columns restricted to `rows` (in order)."""
    idx = rows.tolist()
    return {k: [v[i] for i in idx] for k, v in entities.items()}


def merge(answers: Sequence[Answer], n: int) -> dict[str, Any]:
    """Feast's JSON for the whole request (n rows) from the nodes' answers for their rows."""
    return merge_bodies([(a.rows, orjson.loads(a.content), a.columns) for a in answers], n)


def merge_bodies(
    parts: Sequence[tuple[np.ndarray, dict[str, Any], Sequence[int] | None]], n: int
) -> dict[str, Any]:
    """Feast's JSON for n rows from partial Feast JSON bodies: (the request rows a body answers,
    ascending; the body; the result columns it answers for, None for all). Event times come out
    in one unit per column, as a single root writes them (`uniform_times`)."""
    first = parts[0][1]
    merged: dict[str, Any] = {
        "metadata": first["metadata"],
        "results": [
            {"values": [None] * n, "statuses": [None] * n, "event_timestamps": [None] * n}
            for _ in first["results"]
        ],
    }
    for rows_arr, body, columns in parts:
        rows = rows_arr.tolist()
        results = body["results"]
        for c in range(len(results)) if columns is None else columns:
            src, dst = results[c], merged["results"][c]
            for field in ("values", "statuses", "event_timestamps"):
                values, target = src[field], dst[field]
                for j, r in enumerate(rows):
                    target[r] = values[j]
    if len(parts) > 1:
        for result in merged["results"]:
            result["event_timestamps"] = uniform_times(result["event_timestamps"])
    return merged


_EPOCH = "1970-01-01T00:00:00Z"  # Feast's event time of a key column and of a miss, any unit
_NAT = "NaTZ"


def uniform_times(texts: list[Any]) -> list[Any]:
    """One column's RFC 3339 event times, merged from several nodes, written with ONE unit.

    Each node writes its rows with the shortest unit (s, ms, us, ns) exact for all of them; a
    single root does that over the whole column. This rewrites every text to the shortest unit
    exact for the whole column, as a single root would: the plain epoch (a miss) stays as it is
    and a NaT needs ns, as in app/feast_json.py `rfc3339`."""
    digits = 0
    for t in texts:
        if not isinstance(t, str) or t == _EPOCH:
            continue
        if t == _NAT:
            digits = 9
            break
        dot = t.find(".")
        if dot >= 0:
            need = len(t[dot + 1 : -1].rstrip("0"))
            digits = max(digits, -(-need // 3) * 3)
    out: list[Any] = []
    for t in texts:
        if not isinstance(t, str) or t in (_EPOCH, _NAT):
            out.append(t)
            continue
        dot = t.find(".")
        base, frac = (t[:-1], "") if dot < 0 else (t[:dot], t[dot + 1 : -1])
        frac = (frac + "0" * 9)[:digits]
        out.append(f"{base}.{frac}Z" if digits else f"{base}Z")
    return out
