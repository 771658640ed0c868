"""Training exports of a FeatureStore: `export_training` checks its arguments and the deletes'
as-of rule, then streams the point-in-time join (an entity table, the entities as of an instant,
or on-demand features computed over the joined rows) to Parquet through store/training.py and
store/on_demand_export.py.

Thread-safety: callable from any thread; it takes no store lock (reads see the current Snapshot
and the offline store's own snapshots). The export counter is approximate under concurrency
(statistics only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store import forget as forgetting
from store.errors import ValidationError
from store.on_demand_export import export_on_demand
from store.training import export, export_entities_as_of

if TYPE_CHECKING:
    from store.feature_store import FeatureStore

__all__ = ["export_training"]


def export_training(
    fs: FeatureStore,
    entities: Any = None,
    features: str | Sequence[str] | None = None,
    out_path: str | Path | None = None,
    as_of_seq: int | None = None,
    full_feature_names: bool = False,
    *,
    entities_as_of: Any = None,
) -> dict[str, Any]:
    """FeatureStore.export_training (its docstring is the contract): check the arguments and
    the as-of seq against deletes, then export at the applied seq."""
    if features is None or out_path is None:
        raise ValidationError("export_training needs features and out_path")
    if (entities is None) == (entities_as_of is None):
        raise ValidationError("export_training takes either entities or entities_as_of")
    fs._writes.check_readable()
    forgetting.check_as_of(fs._deleted, forgetting.views_of(fs._snap, features), as_of_seq)
    last = fs._writes.applied_seq
    if entities_as_of is not None:
        if fs._snap.plan(features, full_feature_names).on_demand is not None:
            raise ValidationError(
                "on-demand features are computed over entity rows (their request fields are "
                "columns of them): pass entities, not entities_as_of"
            )
        out = export_entities_as_of(
            fs._off,
            fs._snap,
            features,
            out_path,
            entities_as_of,
            full_feature_names,
            as_of_seq,
            last,
        )
        fs._counters["exports"] += 1
        return out
    plan = fs._snap.plan(features, full_feature_names)
    if plan.on_demand is not None:  # computed features over the joined rows, in batches
        out = export_on_demand(fs._off, fs._snap, entities, plan, out_path, as_of_seq, last)
        fs._counters["exports"] += 1
        return out
    out = export(
        fs._off, fs._snap, entities, features, out_path, full_feature_names, as_of_seq, last
    )
    fs._counters["exports"] += 1
    return out
