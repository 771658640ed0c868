"""Point-in-time join SQL: for each entity row, the latest feature row at or before its time.

Plan (DuckDB): each view's rows, pruned to the partitions `[min ts - ttl, max ts]` can touch
and filtered by `_seq <= as_of_seq`, carry a version struct `{t: event_ts, c: created_ts,
s: _seq, r: _row}`. The entity row carries `{t: entity_ts, c: MAX, s: MAX, r: MAX}`; an
`ASOF LEFT JOIN ... ON keys = keys AND entity_v >= feature_v` then picks, in one pass, the
maximum version with `event_ts <= entity_ts` — ties on event_timestamp broken by the version
order without a separate dedupe step (measured ~25% faster than ROW_NUMBER dedupe + ASOF on
int64). A match older than `entity_ts - ttl` yields nulls, never an older row. Every entity row
appears once, in input order (`ORDER BY` its row id). Pure functions over SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass

from offline.names import CREATED_TS, EVENT_TS, ROW_COLUMN, SEQ_COLUMN, quote_ident

ENTITY_ID = "__rh_eid"  # input position of an entity row
ENTITY_TS = "__rh_ets"  # entity event_timestamp as int64 ns UTC
_VERSION = "__rh_v"
_INT64_MAX = 9_223_372_036_854_775_807
_INT32_MAX = 2_147_483_647


@dataclass(frozen=True)
class JoinPart:
    """One view's side of the join: its source subquery and the features to output."""

    source: str  # SQL subquery over the stored columns (see source.source_sql)
    keys: tuple[str, ...]
    features: tuple[str, ...]
    out_names: tuple[str, ...]  # output column name per feature
    ttl_ns: int
    casts: tuple[str | None, ...] = ()  # SQL type per output feature, or None to keep it


def version_struct(ts: str, created: str, seq: str, row: str) -> str:
    return f"{{'t': {ts}, 'c': {created}, 's': {seq}, 'r': {row}}}"


def feature_cte(part: JoinPart) -> str:
    """SELECT of a view's rows with the version struct, for the right side of ASOF."""
    version = version_struct(
        f"epoch_ns({quote_ident(EVENT_TS)})",
        f"epoch_ns({quote_ident(CREATED_TS)})",
        quote_ident(SEQ_COLUMN),
        f"CAST({quote_ident(ROW_COLUMN)} AS INTEGER)",
    )
    cols = [quote_ident(k) for k in part.keys] + [quote_ident(f) for f in part.features]
    return f"SELECT {', '.join(cols)}, {version} AS {_VERSION} FROM {part.source}"


def join_sql(entity_source: str, entity_columns: list[str] | None, parts: list[JoinPart]) -> str:
    """The full join: entity columns (`entity_columns`, or none) then features, in input order.

    `entity_source` yields the entity columns plus ENTITY_ID and ENTITY_TS.
    """
    ctes = [
        "__rh_e AS (SELECT *, "
        + version_struct(ENTITY_TS, str(_INT64_MAX), str(_INT64_MAX), str(_INT32_MAX))
        + f" AS {_VERSION} FROM {entity_source})"
    ]
    joins = []
    selects = [f"__rh_e.{quote_ident(c)}" for c in entity_columns or []]
    for i, part in enumerate(parts):
        alias = f"__rh_f{i}"
        ctes.append(f"{alias} AS ({feature_cte(part)})")
        on = [f"__rh_e.{quote_ident(k)} = {alias}.{quote_ident(k)}" for k in part.keys]
        on.append(f"__rh_e.{_VERSION} >= {alias}.{_VERSION}")
        joins.append(f"ASOF LEFT JOIN {alias} ON {' AND '.join(on)}")
        casts = part.casts or (None,) * len(part.features)
        for feature, out, cast in zip(part.features, part.out_names, casts, strict=True):
            value = f"{alias}.{quote_ident(feature)}"
            if part.ttl_ns > 0:
                fresh = f"{alias}.{_VERSION}.t >= __rh_e.{ENTITY_TS} - {int(part.ttl_ns)}"
                value = f"CASE WHEN {fresh} THEN {value} END"
            if cast is not None:
                value = f"CAST({value} AS {cast})"
            selects.append(f"{value} AS {quote_ident(out)}")
    if not selects:
        selects = [f"__rh_e.{ENTITY_ID}"]
    return (
        "WITH "
        + ", ".join(ctes)
        + f" SELECT {', '.join(selects)} FROM __rh_e "
        + " ".join(joins)
        + f" ORDER BY __rh_e.{ENTITY_ID}"
    )
