"""Training exports of on-demand features over a cluster: the sources joined by the ordinary
cluster export, the expressions evaluated by the router with the store's code.

`prepare` and `run` are cluster/export.py's steps 1 and 3 for any request; a request without
on-demand features passes straight through. With on-demand features:
1. `prepare` plans the request as a single root does (`plan_features`: the same errors and the
   same output columns), refuses `entities_as_of` and entity rows that lack a request field
   (the root's messages), and plans the ordinary cluster export of the JOIN: the requested
   feature-view features and every source feature the expressions read
   (`on_demand_join_refs`), under full `view__feature` names so no name can collide. The
   request fields stay columns of the entity rows, which the join passes through.
2. `run` runs that export (Ray tasks per tablet, gathered in input order) to a temporary file
   beside the output, then streams it through `write_on_demand` (store/on_demand_export.py):
   the same compiled programs over the same joined rows, batch by batch, so the file equals a
   single root's `export_training` row for row, value for value, null for null. The output
   file is written whole or not at all (temp file, rename).
A request of request fields only (no source feature) joins nothing: the entity rows are the
joined rows; the tablets are still pinned, so the answer names a position.

Pure functions but for `run` (Ray, files); safe from any thread.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cluster import export
from cluster.export import ExportOutcome, ExportSpec, TabletPin
from store import Definitions
from store.errors import ValidationError
from store.features import plan_features
from store.on_demand_export import check_request_columns, on_demand_join_refs, write_on_demand
from store.training import entity_table


def prepare(
    defs: Definitions,
    features: str | Sequence[str],
    entities: Any,
    entities_as_of: Any,
    partitions: int,
    now_ns: int | None = None,
) -> ExportSpec:
    """Plan and scatter an export, on-demand features or not (module docstring, step 1)."""
    plan = plan_features(defs, features, False)
    if plan.on_demand is None:
        return export.prepare(defs, features, entities, entities_as_of, partitions, now_ns)
    if entities_as_of is not None:
        raise ValidationError(
            "on-demand features are computed over entity rows (their request fields are "
            "columns of them): pass entities, not entities_as_of"
        )
    if isinstance(entities, (str, Path)):
        entities = pq.read_table(str(entities))
    check_request_columns(entities, plan)
    refs = on_demand_join_refs(plan)
    if refs:
        spec = export.prepare(defs, refs, entities, None, partitions, now_ns, True)
        return replace(spec, computed=plan)
    table = entity_table(entities, plan)
    assert isinstance(table, pa.Table)  # a table in, a table out
    if table.num_rows == 0:
        raise ValidationError("the entity rows are empty")
    return ExportSpec(plan, table.combine_chunks(), None, (), computed=plan)


def run(spec: ExportSpec, pins: Mapping[int, TabletPin], out_path: str | Path) -> ExportOutcome:
    """Blocking: the export, on-demand features computed over its joined rows (step 2)."""
    if spec.computed is None:
        return export.run(spec, pins, out_path)
    out = Path(out_path)
    joined = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.joined.parquet")
    temp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        if spec.groups:
            outcome = export.run(spec, pins, joined)
        else:  # request fields only: the entity rows are the joined rows
            assert spec.entities is not None
            pq.write_table(spec.entities, str(joined))
            position = {p: pin.offset for p, pin in sorted(pins.items())}
            outcome = ExportOutcome(spec.entities.num_rows, position, "", {}, {}, 0)
        t0 = time.perf_counter()
        rows = write_on_demand(joined, spec.computed, temp)
        os.replace(temp, out)
    finally:
        joined.unlink(missing_ok=True)
        temp.unlink(missing_ok=True)
    timings = {**outcome.timings, "on_demand_s": time.perf_counter() - t0}
    return replace(outcome, rows=rows, path=str(out), timings=timings)
