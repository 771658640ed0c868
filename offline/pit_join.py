"""Point-in-time join SQL: for each entity row, the latest feature row at or before its time.

Plan (DuckDB), per queried view, in two steps (late materialization):
1. Match: the view's narrow rows (keys and a version struct `{t: event_ts, c: created_ts,
   s: _seq, r: _row}`), pruned to the partitions `[min ts - ttl, max ts]` can touch and
   filtered by `_seq <= as_of_seq`, are the right side of
   `ASOF LEFT JOIN ... ON keys = keys AND entity_v >= feature_v`, where the entity row carries
   `{t: entity_ts, c: MAX, s: MAX, r: MAX}`. The ASOF picks the maximum version with
   `event_ts <= entity_ts` in one pass: ties on event_timestamp are broken by the version order
   with no dedupe step (a ROW_NUMBER dedupe + ASOF on int64 measured ~25% slower). A match
   older than `entity_ts - ttl` gives no match (nulls), never an older row.
2. Fetch: the matched `(_seq, _row)` — unique within a view — is hash-joined to the view's
   feature columns. The ASOF sort then carries ~40 bytes per feature row instead of every
   feature (measured ~2x faster and ~20% less memory on 5M rows x 8 features).
Every entity row appears once, in input order (`ORDER BY` its row id, or restored by the
caller). Pure functions over
SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass

from offline.names import CREATED_TS, EVENT_TS, ROW_COLUMN, SEQ_COLUMN, quote_ident

ENTITY_ID = "__rh_eid"  # input position of an entity row
ENTITY_TS = "__rh_ets"  # entity event_timestamp as int64 ns UTC
_VERSION = "__rh_v"
_INT64_MAX = 9_223_372_036_854_775_807
_INT32_MAX = 2_147_483_647
MATCH_COLUMNS = (EVENT_TS, CREATED_TS, SEQ_COLUMN, ROW_COLUMN)  # besides the keys
FETCH_COLUMNS = (SEQ_COLUMN, ROW_COLUMN)  # besides the features


@dataclass(frozen=True)
class JoinPart:
    """One view's side of the join: its two source subqueries and the features to output."""

    match_source: str  # SQL subquery yielding the keys and MATCH_COLUMNS
    fetch_source: str  # SQL subquery yielding FETCH_COLUMNS and the features
    keys: tuple[str, ...]
    features: tuple[str, ...]
    out_names: tuple[str, ...]  # output column name per feature
    ttl_ns: int
    casts: tuple[str | None, ...] = ()  # SQL type per output feature, or None to keep it
    # True: the entity source already carries the match as `__rh_s<i>`, `__rh_r<i>` (ttl
    # applied; see pit_match), so this part needs no ASOF.
    precomputed: bool = False


def version_struct(ts: str, created: str, seq: str, row: str) -> str:
    return f"{{'t': {ts}, 'c': {created}, 's': {seq}, 'r': {row}}}"


def _match_cte(part: JoinPart) -> str:
    version = version_struct(
        f"epoch_ns({quote_ident(EVENT_TS)})",
        f"epoch_ns({quote_ident(CREATED_TS)})",
        quote_ident(SEQ_COLUMN),
        f"CAST({quote_ident(ROW_COLUMN)} AS INTEGER)",
    )
    keys = ", ".join(quote_ident(k) for k in part.keys)
    return f"SELECT {keys}, {version} AS {_VERSION} FROM {part.match_source}"


def join_sql(
    entity_source: str,
    entity_columns: list[str] | None,
    parts: list[JoinPart],
    ordered: bool = True,
) -> str:
    """The full join: entity columns (`entity_columns`, or none) then features, in input order.

    `entity_source` yields the entity columns plus ENTITY_ID and ENTITY_TS. `ordered=False`
    leaves out the ORDER BY and outputs ENTITY_ID last, for a caller that restores the order
    itself (an Arrow take by inverse permutation is cheaper than DuckDB's sort of every
    feature column).
    """
    ctes = [
        "__rh_e AS (SELECT *, "
        + version_struct(ENTITY_TS, str(_INT64_MAX), str(_INT64_MAX), str(_INT32_MAX))
        + f" AS {_VERSION} FROM {entity_source})"
    ]
    asofs, matched = [], ["__rh_e.*"]
    fetches, selects = [], [f"__rh_m.{quote_ident(c)}" for c in entity_columns or []]
    for i, part in enumerate(parts):
        f, g = f"__rh_f{i}", f"__rh_g{i}"
        fetches.append(
            f"LEFT JOIN {part.fetch_source} AS {g} ON __rh_m.__rh_s{i} = {g}.{quote_ident(SEQ_COLUMN)}"
            f" AND __rh_m.__rh_r{i} = {g}.{quote_ident(ROW_COLUMN)}"
        )
        casts = part.casts or (None,) * len(part.features)
        for feature, out, cast in zip(part.features, part.out_names, casts, strict=True):
            value = f"{g}.{quote_ident(feature)}"
            if cast is not None:
                value = f"CAST({value} AS {cast})"
            selects.append(f"{value} AS {quote_ident(out)}")
        if part.precomputed:
            continue
        ctes.append(f"{f} AS ({_match_cte(part)})")
        on = [f"__rh_e.{quote_ident(k)} = {f}.{quote_ident(k)}" for k in part.keys]
        on.append(f"__rh_e.{_VERSION} >= {f}.{_VERSION}")
        asofs.append(f"ASOF LEFT JOIN {f} ON {' AND '.join(on)}")
        fresh = "TRUE"
        if part.ttl_ns > 0:
            fresh = f"{f}.{_VERSION}.t >= __rh_e.{ENTITY_TS} - {int(part.ttl_ns)}"
        matched.append(f"CASE WHEN {fresh} THEN {f}.{_VERSION}.s END AS __rh_s{i}")
        matched.append(f"CASE WHEN {fresh} THEN {f}.{_VERSION}.r END AS __rh_r{i}")
    ctes.append(f"__rh_m AS (SELECT {', '.join(matched)} FROM __rh_e {' '.join(asofs)})")
    if not selects or not ordered:
        selects.append(f"__rh_m.{ENTITY_ID}")
    return (
        "WITH "
        + ", ".join(ctes)
        + f" SELECT {', '.join(selects)} FROM __rh_m "
        + " ".join(fetches)
        + (f" ORDER BY __rh_m.{ENTITY_ID}" if ordered else "")
    )
