"""Historical reads and exports that include aggregation views.

`aggregate_historical` answers a read plan with at least one aggregation view: the plain views'
features come from the ordinary point-in-time join (the `plain_join` callback, so retention,
ttl and renames stay where they are handled), each aggregation view's from
store/aggregations/export.py `aggregate_columns` at T = each row's event_timestamp. The result
is the entity table's columns followed by the features in request order, like a plain join.
Pure function of its inputs; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa

from offline import OfflineStore
from store.aggregations.export import aggregate_columns
from store.features import FeaturePlan

# plain_join(entity table, refs of plain views) -> the joined table (entity columns + features)
PlainJoin = Callable[[pa.Table, Sequence[str]], pa.Table]


def has_aggregates(plan: FeaturePlan) -> bool:
    return any(r.view.aggregations for r in plan.reads)


def aggregate_historical(
    off: OfflineStore,
    storage: Mapping[str, str],
    plan: FeaturePlan,
    entities: pa.Table,
    as_of_seq: int,
    plain_join: PlainJoin,
) -> pa.Table:
    """entities: checked and cast by store.training.entity_table (a table, not a path)."""
    plain_refs = [
        f"{r.view.name}:{f}" for r in plan.reads if not r.view.aggregations for f in r.features
    ]
    table = plain_join(entities, plain_refs) if plain_refs else entities
    for r in plan.reads:
        if not r.view.aggregations:
            continue
        cols = aggregate_columns(off, storage[r.view.name], r.view, r.features, entities, as_of_seq)
        for name, col in zip(r.names, cols, strict=True):
            table = table.append_column(name, col)
    return table.select([*entities.column_names, *plan.names])
