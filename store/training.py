"""Training data: point-in-time joins of an entity table with feature views, in memory or
streamed to Parquet, through the offline store.

`export_entities_as_of` exports without an entity list: the latest row of every entity at
one instant (OfflineStore.export_as_of).
`historical_features` and `export` take one snapshot and a seq: the entity table is checked and
cast here (join keys to their types, event_timestamp required, numbers as epoch seconds), each
view becomes one offline FeatureQuery against its storage name, and the result's schema
metadata names the seq. The offline store's refusals of the entity input become
ValidationError. Pure functions of their inputs; safe from any thread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from offline import FeatureQuery, OfflineStore, SchemaMismatchError
from store.aggregations.historical import aggregate_historical, has_aggregates
from store.batch import EVENT_TS, repeated_name
from store.dtypes import arrow_type
from store.errors import EntityKeyError, ValidationError
from store.features import FeaturePlan
from store.retention import OUTSIDE_METADATA, outside_retention, read_cutoffs, with_outside
from store.snapshot import Snapshot
from store.timestamps import from_epoch_seconds, parse_iso8601

log = logging.getLogger(__name__)

SEQ_METADATA = b"rickhouse.seq"  # schema metadata naming the seq a historical result was taken at


def historical_features(
    off: OfflineStore,
    snap: Snapshot,
    entity_df: Any,
    features: str | Sequence[str],
    full_feature_names: bool,
    as_of_seq: int | None,
    last_seq: int,
) -> pa.Table:
    """The point-in-time join as of `as_of_seq` (default: `last_seq`, the last applied seq);
    its schema metadata names the seq (SEQ_METADATA)."""
    plan = snap.plan(features, full_feature_names)
    seq = as_of(as_of_seq, last_seq)
    if has_aggregates(plan):  # aggregation views' columns at each row's time, then the rest
        with entity_errors():
            ents = entity_table(entity_df, plan)
            if isinstance(ents, str):
                ents = entity_table(pq.read_table(ents), plan)
            assert isinstance(ents, pa.Table)

            def plain(table: pa.Table, refs: Sequence[str]) -> pa.Table:
                return historical_features(off, snap, table, refs, full_feature_names, seq, seq)

            table = aggregate_historical(off, snap.storage, plan, ents, seq, plain)
        return with_seq(table, seq)
    with entity_errors():
        entities = entity_table(entity_df, plan)
        outside, null_before = outside_retention(off, snap, entities, read_cutoffs(plan, snap))
        table = off.get_historical(
            entities,
            feature_queries(plan, snap.storage),
            as_of_seq=seq,
            full_feature_names=full_feature_names,
            null_before=null_before or None,
        )
    if full_feature_names:
        table = logical_names(table, plan, snap.storage)
    return with_outside(with_seq(table, seq), outside)


def export(
    off: OfflineStore,
    snap: Snapshot,
    entities: Any,
    features: str | Sequence[str],
    out_path: str | Path,
    full_feature_names: bool,
    as_of_seq: int | None,
    last_seq: int,
) -> dict[str, Any]:
    """Stream the point-in-time join as of `as_of_seq` (default: `last_seq`) to Parquet at
    `out_path`: {"seq", "rows", "path"}."""
    plan = snap.plan(features, full_feature_names)
    seq = as_of(as_of_seq, last_seq)
    if has_aggregates(plan):  # joined in memory (store/aggregations/historical.py)
        table = historical_features(off, snap, entities, features, full_feature_names, seq, seq)
        pq.write_table(table, str(out_path), compression="zstd")
        answer = {"seq": seq, "rows": table.num_rows, "path": str(out_path)}
        meta = (table.schema.metadata or {}).get(OUTSIDE_METADATA)
        return answer | ({"outside_retention": json.loads(meta)} if meta else {})
    if full_feature_names and any(snap.storage[r.view.name] != r.view.name for r in plan.reads):
        # a view in its second storage generation would export as `<view>__g<n>__feature`:
        # join in memory and rename instead of streaming (the offline export cannot rename)
        table = historical_features(off, snap, entities, features, True, seq, last_seq)
        pq.write_table(table, str(out_path), compression="zstd")
        answer = {"seq": seq, "rows": table.num_rows, "path": str(out_path)}
        meta = (table.schema.metadata or {}).get(OUTSIDE_METADATA)
        return answer | ({"outside_retention": json.loads(meta)} if meta else {})
    with entity_errors():
        ent = entity_table(entities, plan)
        outside, null_before = outside_retention(off, snap, ent, read_cutoffs(plan, snap))
        res = off.export(
            ent,
            feature_queries(plan, snap.storage),
            str(out_path),
            as_of_seq=seq,
            full_feature_names=full_feature_names,
            null_before=null_before or None,
        )
    log.info("exported %d rows at seq %d to %s", res.rows, res.seq, res.path)
    # `outside_retention` ({view: entity rows before its cutoff, read as nulls}) is present
    # when a view read has a retention (store/retention.py)
    answer = {"seq": res.seq, "rows": res.rows, "path": res.path}
    return answer | ({"outside_retention": outside} if outside else {})


def as_of(as_of_seq: int | None, last_seq: int) -> int:
    """The seq a read is taken at: `as_of_seq` (0..last_seq), or `last_seq` when None."""
    if as_of_seq is None:
        return last_seq
    if not isinstance(as_of_seq, int) or as_of_seq < 0 or as_of_seq > last_seq:
        raise ValidationError(
            f"as_of_seq must be an int between 0 and the last seq {last_seq}, got {as_of_seq!r}"
        )
    return as_of_seq


def feature_queries(plan: FeaturePlan, storage: Mapping[str, str]) -> list[FeatureQuery]:
    """One offline query per view of the plan, against the view's storage name."""
    return [
        FeatureQuery(storage[r.view.name], list(r.features), r.view.join_keys, r.view.ttl_ns)
        for r in plan.reads
    ]


def with_seq(table: pa.Table, seq: int) -> pa.Table:
    """`table` with its schema metadata naming `seq` (pandas metadata of the input dropped)."""
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"pandas"}
    meta[SEQ_METADATA] = str(seq).encode()
    return table.replace_schema_metadata(meta)


def entity_table(entity_df: Any, plan: FeaturePlan) -> pa.Table | str:
    """The entity table of a point-in-time join: join keys cast to their types, event_timestamp
    required, other columns passed through; a str is a Parquet path for the offline store, which
    streams it. A Parquet file whose event_timestamp holds numbers (epoch seconds, as everywhere)
    is read here and converted like a table."""
    if isinstance(entity_df, (str, Path)):
        if not _numeric_event_ts(str(entity_df)):
            return str(entity_df)
        entity_df = pq.read_table(str(entity_df))
    if isinstance(entity_df, pd.DataFrame):
        table = pa.Table.from_pandas(entity_df, preserve_index=False)
    elif isinstance(entity_df, pa.RecordBatch):
        table = pa.Table.from_batches([entity_df])
    elif isinstance(entity_df, pa.Table):
        table = entity_df
    elif isinstance(entity_df, Mapping):
        table = pa.table(dict(entity_df))
    else:
        raise EntityKeyError(
            f"entity_df must be a pandas DataFrame, pyarrow Table or a parquet path, got {type(entity_df).__name__}"
        )
    names = table.column_names
    dup = repeated_name(names)
    if dup is not None:
        raise EntityKeyError(f"entity_df repeats column {dup!r}", column=dup)
    if "" in names:
        raise EntityKeyError("entity_df has a column with an empty name", column="")
    for name, dtype in plan.join_keys:
        if name not in table.column_names:
            raise EntityKeyError(f"entity_df lacks join key {name!r}", column=name)
        col = table.column(name)
        if col.type != arrow_type(dtype):
            try:
                col = col.cast(arrow_type(dtype))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise EntityKeyError(
                    f"entity_df join key {name!r} is not {dtype}: {e}", column=name
                ) from None
            table = table.set_column(table.schema.get_field_index(name), name, col)
    if EVENT_TS not in table.column_names:
        raise EntityKeyError(f"entity_df lacks the {EVENT_TS!r} column", column=EVENT_TS)
    ts = table.column(EVENT_TS)
    if pa.types.is_integer(ts.type) or pa.types.is_floating(ts.type):
        try:  # numbers are Unix epoch seconds, as in ingested batches (store/batch.py)
            ts = from_epoch_seconds(ts.combine_chunks())
        except pa.ArrowInvalid as e:
            raise EntityKeyError(
                f"entity_df {EVENT_TS!r} holds numbers outside the epoch-seconds range: {e}",
                column=EVENT_TS,
            ) from None
        table = table.set_column(table.schema.get_field_index(EVENT_TS), EVENT_TS, ts)
    return table


def _numeric_event_ts(path: str) -> bool:
    """The Parquet file at `path` has a numeric event_timestamp (its footer only; an unreadable
    file is left to the offline store, which names the problem)."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return False
    if EVENT_TS not in schema.names:
        return False
    t = schema.field(EVENT_TS).type
    return pa.types.is_integer(t) or pa.types.is_floating(t)


@contextmanager
def entity_errors() -> Iterator[None]:
    """The offline store's refusals of a join's input (an entity column missing, mistyped or
    colliding with a feature, a null or out-of-range event_timestamp) as a ValidationError:
    the caller's input is wrong, not the store."""
    try:
        yield
    except SchemaMismatchError as e:
        raise ValidationError(str(e)) from None


def logical_names(table: pa.Table, plan: FeaturePlan, storage: Mapping[str, str]) -> pa.Table:
    """Rename `<storage>__feature` columns of renamed views back to `<view>__feature`."""
    renames = {
        f"{storage[r.view.name]}__{f}": f"{r.view.name}__{f}"
        for r in plan.reads
        if storage[r.view.name] != r.view.name
        for f in r.features
    }
    if not renames:
        return table
    return table.rename_columns([renames.get(c, c) for c in table.column_names])


def export_entities_as_of(
    off: OfflineStore,
    snap: Snapshot,
    features: str | Sequence[str],
    out_path: str | Path,
    entities_as_of: Any,
    full_feature_names: bool,
    as_of_seq: int | None,
    last_seq: int,
) -> dict[str, Any]:
    """Export the latest row of every entity at the instant `entities_as_of` (no entity
    list; see OfflineStore.export_as_of) as of `as_of_seq`: {"seq", "rows", "path",
    "entities_as_of"}, and "outside_retention" as `export` gives it. Entities deleted
    (FeatureStore.delete / forget) are gone from the offline files, so they get no row, or
    nulls for the views they were deleted from."""
    plan = snap.plan(features, full_feature_names)
    if getattr(plan, "on_demand", None) is not None or has_aggregates(plan):
        raise ValidationError(
            "entities_as_of exports stored features only: computed (on-demand) and "
            "aggregation features need entity rows; pass entities instead"
        )
    seq = as_of(as_of_seq, last_seq)
    ts_ns = entities_as_of_ns(entities_as_of)
    if full_feature_names and any(snap.storage[r.view.name] != r.view.name for r in plan.reads):
        raise ValidationError(
            "entities_as_of with full_feature_names is not supported for a view whose type "
            "changed (it is stored under a new name); export without full_feature_names"
        )
    cutoffs = read_cutoffs(plan, snap)
    null_before = {snap.storage[v]: c for v, c in cutoffs.items() if c > ts_ns}
    with entity_errors():
        res = off.export_as_of(
            feature_queries(plan, snap.storage),
            ts_ns,
            str(out_path),
            as_of_seq=seq,
            full_feature_names=full_feature_names,
            null_before=null_before or None,
        )
    log.info("exported %d entities as of %d at seq %d to %s", res.rows, ts_ns, res.seq, res.path)
    answer = {"seq": res.seq, "rows": res.rows, "path": res.path, "entities_as_of": ts_ns}
    # every row is at `ts_ns`: all of them are outside a view's retention when the instant is
    # before its cutoff, none otherwise; present when a view read has a retention, as `export`
    outside = {v: res.rows if c > ts_ns else 0 for v, c in cutoffs.items()}
    return answer | ({"outside_retention": outside} if outside else {})


def entities_as_of_ns(value: Any) -> int:
    """The instant of an `entities_as_of`: ISO 8601 text (naive = UTC), a number of Unix epoch
    seconds (as everywhere in the store), a datetime or a pandas Timestamp -> int64 ns UTC."""
    if isinstance(value, bool) or value is None:
        raise ValidationError(f"entities_as_of must be a timestamp, got {value!r}")
    try:
        if isinstance(value, str):
            arr = parse_iso8601([value])
        elif isinstance(value, int | float):
            arr = from_epoch_seconds(pa.array([value]))
        else:
            arr = pa.array([pd.Timestamp(value)], pa.timestamp("ns", tz="UTC"))
        return int(arr.cast(pa.int64())[0].as_py())
    except (ValueError, TypeError, OverflowError, pa.ArrowException) as e:
        raise ValidationError(f"entities_as_of {value!r} is not a timestamp: {e}") from None
