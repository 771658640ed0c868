"""The router's half of a cluster export's results (cluster/export.py step 3): the retention
cutoffs the tasks apply, counted as a root counts them, and the gather of the tasks' tables
into one table in input order (by key with `entities_as_of`), under the plan's names.
Pure functions; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from cluster.export import ExportSpec, Group, TabletPin

EVENT_TS = "event_timestamp"


def retention(
    spec: ExportSpec, pins: Mapping[int, TabletPin]
) -> tuple[dict[str, int], dict[str, int]]:
    """(null_before by storage name, rows outside retention by view), as a root counts them."""
    if not spec.cutoffs:
        return {}, {}
    any_pin = next(iter(pins.values()))
    storage = {v: any_pin.listings[v]["storage"] for v in spec.cutoffs}
    if spec.entities is None:
        ts = spec.entities_as_of_ns or 0
        return {storage[v]: c for v, c in spec.cutoffs.items() if c > ts}, {}
    ts_ns = spec.entities.column(EVENT_TS).cast(pa.int64())
    outside = {v: int(pc.sum(pc.less(ts_ns, c)).as_py() or 0) for v, c in spec.cutoffs.items()}
    return {storage[v]: c for v, c in spec.cutoffs.items() if outside[v]}, outside


def gather(spec: ExportSpec, keys: list[tuple[Group, int]], parts: list[pa.Table]) -> pa.Table:
    """One table in input order (by key with entities_as_of) from the tasks' results."""
    if spec.entities is None:
        table = pa.concat_tables(parts)
        join_keys = spec.plan.reads[0].view.join_keys
        return table.sort_by([(k, "ascending") for k in join_keys])
    n, width = spec.entities.num_rows, spec.entities.num_columns
    by_group: dict[int, pa.Table] = {}
    for gi, g in enumerate(spec.groups):
        mine = [(p, t) for (gg, p), t in zip(keys, parts, strict=True) if gg is g]
        table = pa.concat_tables([t for _, t in mine])
        order = np.concatenate([g.rows[p] for p, _ in mine])
        inverse = np.empty(n, np.int64)
        inverse[order] = np.arange(n, dtype=np.int64)
        by_group[gi] = table.take(pa.array(inverse))
    first = by_group[0]
    columns = [first.column(i) for i in range(width)]
    names = first.column_names[:width]
    for i in range(len(spec.plan.reads)):
        gi = next(k for k, g in enumerate(spec.groups) if i in g.reads)
        g = spec.groups[gi]
        at = width + sum(len(spec.plan.reads[j].features) for j in g.reads[: g.reads.index(i)])
        columns += by_group[gi].columns[at : at + len(spec.plan.reads[i].features)]
        names += spec.plan.reads[i].names  # the plan's names, whatever a view's storage
    return pa.Table.from_arrays(columns, names=names)
