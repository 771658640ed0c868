"""The router's read plan and merge: entity rows scattered by partition, answers merged in order.

A Feast `/get-online-features` request may read views of different join keys. For each routing
group (the distinct join key tuples of the views read, cluster/tablets.py) every request row has
one partition; the router sends each replica the rows of the partitions it chose it for, with
`route_by` naming the group, and takes from each answer the columns the node says are valid for
that group (the join key columns and the group's views). `merge` puts the answers' rows back in
request order; the result is what a single root answers for the whole request.

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
from cluster.partitioning import key_texts, partitions_of
from cluster.tablets import routing_groups


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
    out: list[GroupRows] = []
    for keys in routing_groups(defs, features):
        if not keys or any(k not in entities for k in keys):
            return [GroupRows((), np.zeros(n, np.int32))]
        try:
            cols = [pa.array(list(entities[k])) for k in keys]
            parts = partitions_of(key_texts(cols), partitions) if n else np.zeros(0, np.int32)
        except (RoutingError, pa.ArrowException):
            return [GroupRows((), np.zeros(n, np.int32))]
        out.append(GroupRows(keys, parts))
    return out


def sub_entities(entities: Mapping[str, Sequence[Any]], rows: np.ndarray) -> dict[str, list]:
    """The request's entity columns restricted to `rows` (in order)."""
    idx = rows.tolist()
    return {k: [v[i] for i in idx] for k, v in entities.items()}


def merge(answers: Sequence[Answer], n: int) -> dict[str, Any]:
    """Feast's JSON for the whole request (n rows) from the nodes' answers for their rows."""
    bodies = [orjson.loads(a.content) for a in answers]
    first = bodies[0]
    merged: dict[str, Any] = {
        "metadata": first["metadata"],
        "results": [
            {"values": [None] * n, "statuses": [None] * n, "event_timestamps": [None] * n}
            for _ in first["results"]
        ],
    }
    for a, body in zip(answers, bodies, strict=True):
        rows = a.rows.tolist()
        results = body["results"]
        columns = range(len(results)) if a.columns is None else a.columns
        for c in columns:
            src, dst = results[c], merged["results"][c]
            for field in ("values", "statuses", "event_timestamps"):
                values, target = src[field], dst[field]
                for j, r in enumerate(rows):
                    target[r] = values[j]
    return merged
