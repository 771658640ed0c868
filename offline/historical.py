"""Training data: resolve FeatureQuery lists against snapshots into one point-in-time join.

Validates every query (view, keys, features, output names) before anything runs, then builds
the SQL of `pit_join` over sources pruned to the dates the entity times (minus ttl) can touch.
Pure planning over a caller-owned DuckDB cursor; thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from offline.entities import EntityInput, check_keys
from offline.errors import SchemaMismatchError
from offline.names import check_identifier
from offline.pit_join import FETCH_COLUMNS, MATCH_COLUMNS, JoinPart, join_sql
from offline.query import FeatureQuery
from offline.source import Bounds, ViewSnapshot, source_sql


@dataclass(frozen=True)
class JoinPlan:
    sql: str
    params: dict[str, object]
    fields: list[pa.Field]  # output feature columns, named and typed
    files: list[str]  # Parquet files the join reads


def check_queries(
    queries: list[FeatureQuery],
    snaps: dict[str, ViewSnapshot],
    ent: EntityInput,
    full_feature_names: bool,
) -> list[pa.Field]:
    """Validate queries against views and entities; the output feature fields, in order."""
    if not queries:
        raise SchemaMismatchError("get_historical needs at least one FeatureQuery")
    fields: list[pa.Field] = []
    taken = set(ent.schema.names)
    for q in queries:
        check_identifier(q.view, "view")
        snap = snaps[q.view]
        if tuple(q.keys) != snap.keys and sorted(q.keys) != sorted(snap.keys):
            raise SchemaMismatchError(
                f"query of view {q.view!r} names keys {q.keys}; the view's keys are {list(snap.keys)}"
            )
        check_keys(ent, q.view, snap.keys, snap.schema)
        for feature in q.features:
            check_identifier(feature, f"feature of view {q.view!r}")
            if feature not in snap.features:
                raise SchemaMismatchError(f"view {q.view!r} has no feature {feature!r}")
            name = f"{q.view}__{feature}" if full_feature_names else feature
            if name in taken:
                raise SchemaMismatchError(
                    f"output column {name!r} (view {q.view!r}) collides with an entity column "
                    "or another feature; use full_feature_names=True or rename"
                )
            taken.add(name)
            fields.append(pa.field(name, snap.schema.field(feature).type))
    return fields


def plan_join(
    con: duckdb.DuckDBPyConnection,
    snaps: dict[str, ViewSnapshot],
    ent: EntityInput,
    queries: list[FeatureQuery],
    as_of_seq: int | None,
    full_feature_names: bool,
    entity_columns: list[str] | None,
    for_parquet: bool = False,
) -> JoinPlan:
    """Register the entity and view sources on `con` and build the join SQL.

    `entity_columns`: entity columns to output before the features (None: none, the caller
    re-attaches them). `for_parquet`: vectors leave as FLOAT[] lists, because DuckDB's
    Parquet encoding of a null fixed-size ARRAY is unreadable by pyarrow 26. Raises SchemaMismatchError / UnknownViewError before any work.
    """
    fields = check_queries(queries, snaps, ent, full_feature_names)
    params: dict[str, object] = {}
    key_cols = list(dict.fromkeys(k for q in queries for k in snaps[q.view].keys))
    wanted = list(dict.fromkeys((entity_columns or []) + key_cols))
    entity_source = ent.register(con, wanted, params)
    parts, files = [], []
    at = 0
    for i, q in enumerate(queries):
        snap = snaps[q.view]
        hi = ent.max_ts if ent.max_ts is not None else 0
        lo = None
        if q.ttl_ns > 0:
            lo = (ent.min_ts if ent.min_ts is not None else 0) - q.ttl_ns
        bounds = Bounds(lo, hi, as_of_seq)
        match_cols = [*snap.keys, *MATCH_COLUMNS]
        match, used = source_sql(con, snap, f"m{i}", match_cols, bounds, params)
        fetch_cols = [*FETCH_COLUMNS, *q.features]
        fetch, _ = source_sql(con, snap, f"f{i}", fetch_cols, bounds, params)
        files += [str(snap.view_dir / f.path) for f in used]
        mine = fields[at : at + len(q.features)]
        at += len(q.features)
        casts = tuple(
            "FLOAT[]" if for_parquet and pa.types.is_fixed_size_list(f.type) else None for f in mine
        )
        names = tuple(f.name for f in mine)
        parts.append(JoinPart(match, fetch, snap.keys, tuple(q.features), names, q.ttl_ns, casts))
    sql = join_sql(entity_source, entity_columns, parts)
    return JoinPlan(sql, params, fields, files)
