"""Training reads of on-demand features: the point-in-time join of the source features, then
the same compiled programs as online, over the joined rows, batch by batch.

`historical_on_demand` / `export_on_demand` serve `get_historical_features` / `export_training`
when the requested features include on-demand ones: they join the requested feature-view
features and every source feature the programs read (store/training.py, with full
`view__feature` names, so no name can collide), take each request field from the entity column
of that name (cast to the field's dtype), evaluate the programs over BATCH_ROWS rows at a time
and write the requested columns under the names asked for. An export joins to a temporary
Parquet file beside `out_path` and streams it through, so its memory stays bounded by a batch.
Because the programs and the inputs' types are those of the online path, online and training
values are equal (bit for bit for floats). Stateless; safe from any thread.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from offline import OfflineStore
from store.batch import EVENT_TS
from store.dtypes import arrow_type
from store.errors import EntityKeyError, ValidationError
from store.expressions import ALL_VALID, Pair, widen
from store.features import FeaturePlan
from store.on_demand import OnDemandPlan
from store.snapshot import Snapshot
from store.training import entity_table, export, historical_features, with_seq

BATCH_ROWS = 65_536  # rows evaluated at once: bounds an export's memory, amortizes numpy calls


def historical_on_demand(
    off: OfflineStore,
    snap: Snapshot,
    entity_df: Any,
    plan: FeaturePlan,
    as_of_seq: int | None,
    last_seq: int,
) -> pa.Table:
    """`get_historical_features` of a plan with on-demand features (in memory)."""
    od = _on_demand(plan)
    _check_request_columns(entity_df, od)
    refs = _join_refs(plan, od)
    if refs:
        joined = historical_features(off, snap, entity_df, refs, True, as_of_seq, last_seq)
    else:  # request fields only: the entity rows are the input
        joined = entity_table(entity_df, plan)
        if isinstance(joined, str):
            joined = pq.read_table(joined)
        joined = with_seq(joined, as_of_seq if as_of_seq is not None else last_seq)
    schema = _output(joined.schema.empty_table(), plan, od).schema
    parts = [_output(b, plan, od).cast(schema) for b in joined.to_batches(max_chunksize=BATCH_ROWS)]
    out = pa.concat_tables(parts) if parts else schema.empty_table()
    return out.replace_schema_metadata(joined.schema.metadata)


def export_on_demand(
    off: OfflineStore,
    snap: Snapshot,
    entities: Any,
    plan: FeaturePlan,
    out_path: str | Path,
    as_of_seq: int | None,
    last_seq: int,
) -> dict[str, Any]:
    """`export_training` of a plan with on-demand features, streamed batch by batch."""
    od = _on_demand(plan)
    _check_request_columns(entities, od)
    refs = _join_refs(plan, od)
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:12]}.joined.parquet")
    try:
        if refs:
            answer = export(off, snap, entities, refs, tmp, True, as_of_seq, last_seq)
        else:
            table = entity_table(entities, plan)
            if isinstance(table, str):
                table = pq.read_table(table)
            pq.write_table(table, str(tmp))
            seq = as_of_seq if as_of_seq is not None else last_seq
            answer = {"seq": seq, "rows": table.num_rows}
        source = pq.ParquetFile(str(tmp))
        schema = _output(source.schema_arrow.empty_table(), plan, od).schema
        schema = schema.with_metadata(source.schema_arrow.metadata)
        with pq.ParquetWriter(str(out_path), schema, compression="zstd") as writer:
            for batch in source.iter_batches(batch_size=BATCH_ROWS):
                writer.write_table(_output(batch, plan, od).cast(schema))
        source.close()
    finally:
        tmp.unlink(missing_ok=True)
    return {**answer, "path": str(out_path)}


def _on_demand(plan: FeaturePlan) -> OnDemandPlan:
    assert plan.on_demand is not None
    return plan.on_demand


def _join_refs(plan: FeaturePlan, od: OnDemandPlan) -> list[str]:
    """The feature-view references the join reads: the requested ones, then hidden sources."""
    refs = list(plan.refs)
    refs += [r for r in od.source_refs if r not in refs]
    return refs


def _check_request_columns(entities: Any, od: OnDemandPlan) -> None:
    """Refuse, before any join, entity input that lacks a request field's column."""
    if not od.request:
        return
    if isinstance(entities, (str, Path)):
        try:
            names: Iterable[str] = pq.read_schema(str(entities)).names
        except (OSError, pa.ArrowException):
            return  # the join names the unreadable file
    elif isinstance(entities, pd.DataFrame):
        names = [str(c) for c in entities.columns]
    elif isinstance(entities, (pa.Table, pa.RecordBatch)):
        names = entities.schema.names
    elif isinstance(entities, Mapping):
        names = list(entities)
    else:
        return  # entity_table names the unsupported type
    have = set(names)
    for name, _ in od.request:
        if name not in have:
            views = ", ".join(repr(r.view.name) for r in od.reads)
            raise EntityKeyError(
                f"entity rows lack request field {name!r}: on-demand view {views} needs it as a "
                "column of the entity rows",
                column=name,
            )


def _output(batch: pa.RecordBatch | pa.Table, plan: FeaturePlan, od: OnDemandPlan) -> pa.Table:
    """The requested columns of one joined batch: entity columns, feature-view features under
    their output names, then the on-demand features computed over the batch."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    hidden = {f"{r.split(':', 1)[0]}__{r.split(':', 1)[1]}" for r in _join_refs(plan, od)}
    names: list[str] = [c for c in table.column_names if c not in hidden]
    arrays: list[Any] = [table.column(c) for c in names]
    for r in plan.reads:
        for feat, name in zip(r.features, r.names, strict=True):
            names.append(name)
            arrays.append(table.column(f"{r.view.name}__{feat}"))
    n = table.num_rows
    cache: dict[tuple[str | None, str], Pair] = {}
    request = dict(od.request)
    for odr in od.reads:
        for name, dtype, program, inputs in zip(
            odr.read.names, odr.read.dtypes, odr.programs, odr.inputs, strict=True
        ):
            args = []
            for view, field in inputs:
                key = (view, field)
                if key not in cache:
                    if view is None:
                        cache[key] = _request_pair(table, field, request[field])
                    else:
                        cache[key] = arrow_pair(table.column(f"{view}__{field}"))
                args.append(cache[key])
            values, valid = program.evaluate(args, n)
            names.append(name)
            arrays.append(_to_arrow(values, valid, dtype))
    if len(set(names)) != len(names):
        dup = next(x for x in names if names.count(x) > 1)
        raise ValidationError(
            f"output column {dup!r} would repeat (an entity column, a feature or an on-demand "
            "feature share the name); rename the entity column or pass full_feature_names=True",
            column=dup,
        )
    return pa.Table.from_arrays(arrays, names=names)


def _request_pair(table: pa.Table, name: str, dtype: str) -> Pair:
    col = table.column(name)
    want = arrow_type(dtype)
    if col.type != want:
        if name == EVENT_TS or pa.types.is_boolean(col.type) != (dtype == "bool"):
            raise EntityKeyError(
                f"entity column {name!r} (a request field) is {col.type}, not {dtype}", column=name
            )
        try:
            col = col.cast(want)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise EntityKeyError(
                f"entity column {name!r} (a request field) is not {dtype}: {e}", column=name
            ) from None
    return arrow_pair(col)


def arrow_pair(col: pa.Array | pa.ChunkedArray) -> Pair:
    """An Arrow column as the evaluator's (values, valid): numbers widened, strings as an
    object array; nulls hold 0 (None for strings)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    valid = ALL_VALID if not col.null_count else col.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col.to_numpy(zero_copy_only=False).astype(object), valid
    if col.null_count:
        col = col.fill_null(False if pa.types.is_boolean(col.type) else 0)
    return widen(col.to_numpy(zero_copy_only=False)), valid


def _to_arrow(values: np.ndarray, valid: np.ndarray, dtype: str) -> pa.Array:
    if dtype == "string":
        vals = values.copy()
        vals[~valid] = None
        return pa.array(vals, type=pa.string())
    return pa.array(values, type=arrow_type(dtype), mask=~valid)


def on_demand_join_refs(plan: FeaturePlan) -> list[str]:
    """The feature-view references an export of `plan` (which has on-demand features) joins:
    the requested ones, then every hidden source; joined under full `view__feature` names."""
    return _join_refs(plan, _on_demand(plan))


def check_request_columns(entities: Any, plan: FeaturePlan) -> None:
    """Refuse entity input that lacks a column for a request field of `plan`'s on-demand views."""
    _check_request_columns(entities, _on_demand(plan))


def write_on_demand(joined_path: str | Path, plan: FeaturePlan, out_path: str | Path) -> int:
    """Write `plan`'s output from joined rows computed elsewhere (the entity columns, then the
    `on_demand_join_refs` features under full `view__feature` names, in a Parquet file), batch
    by batch, exactly as `export_on_demand` writes it: the rows written."""
    od = _on_demand(plan)
    source = pq.ParquetFile(str(joined_path))
    try:
        schema = _output(source.schema_arrow.empty_table(), plan, od).schema
        schema = schema.with_metadata(source.schema_arrow.metadata)
        with pq.ParquetWriter(str(out_path), schema, compression="zstd") as writer:
            for batch in source.iter_batches(batch_size=BATCH_ROWS):
                writer.write_table(_output(batch, plan, od).cast(schema))
        return int(source.metadata.num_rows)
    finally:
        source.close()
