"""Feature references -> a read plan: which views, which features, which output names.

`plan_features` accepts `["view:feature", ...]` or a feature service name and groups the
references by view, in request order. Plans are immutable and cached per
(features, full_feature_names) by the store's Snapshot (store/snapshot.py), so the serving path
parses nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from store.definitions import Definitions, FeatureView
from store.errors import (
    UnknownFeatureError,
    UnknownFeatureServiceError,
    UnknownViewError,
    ValidationError,
)
from store.on_demand import OnDemandPlan, with_on_demand


@dataclass(frozen=True)
class ViewRead:
    """The features read from one view, and their output column names."""

    view: FeatureView
    features: tuple[str, ...]
    names: tuple[str, ...]
    dtypes: tuple[str, ...]


@dataclass(frozen=True)
class FeaturePlan:
    reads: tuple[ViewRead, ...]
    join_keys: tuple[tuple[str, str], ...]  # (name, dtype), first use order
    names: tuple[str, ...]  # output feature names, request order within each view
    refs: tuple[str, ...]  # "view:feature", in the same order as names
    # features of on-demand views (store/on_demand.py), computed after the reads; their names
    # follow `names` in the output. join_keys include their source views' keys.
    on_demand: OnDemandPlan | None = None


def plan_features(
    defs: Definitions, features: str | Sequence[str], full_feature_names: bool
) -> FeaturePlan:
    """Resolve references; raise a NotFoundError naming the unknown view, feature or service."""
    if isinstance(features, str):
        service = defs.feature_services.get(features)
        if service is None:
            if ":" in features:
                refs: Sequence[str] = [features]
            else:
                raise UnknownFeatureServiceError(features)
        else:
            refs = service.features
    else:
        refs = list(features)
    if not refs:
        raise ValidationError(
            "no features requested: pass 'view:feature' names or a feature service"
        )
    grouped: dict[str, list[str]] = {}
    on_demand_refs: list[str] = []
    for ref in refs:
        if not isinstance(ref, str) or ":" not in ref:
            raise UnknownFeatureError(
                str(ref),
                f"feature reference {ref!r} must be 'view:feature' or a feature service name",
            )
        view_name, _, feat = ref.partition(":")
        if view_name in defs.on_demand_views:
            on_demand_refs.append(ref)
            continue
        view = defs.feature_views.get(view_name)
        if view is None:
            raise UnknownViewError(view_name, f"unknown feature view {view_name!r} in {ref!r}")
        if feat not in view.served_index:  # an aggregation view serves its aggregates
            raise UnknownFeatureError(ref, f"feature view {view_name!r} has no feature {feat!r}")
        feats = grouped.setdefault(view_name, [])
        if feat not in feats:
            feats.append(feat)
    reads = []
    owner: dict[str, str] = {}
    keys: dict[str, str] = {}
    for view_name, feats in grouped.items():
        view = defs.feature_views[view_name]
        names = [f"{view_name}__{f}" if full_feature_names else f for f in feats]
        for name in names:
            if name in owner:
                raise ValidationError(
                    f"feature name {name!r} is in both views {owner[name]!r} and {view_name!r}; "
                    "pass full_feature_names=True to get view__feature names"
                )
            owner[name] = view_name
        for k, t in view.keys:
            if keys.setdefault(k, t) != t:
                raise ValidationError(f"join key {k!r} has different types in the requested views")
        dtypes = tuple(view.served_index[f].dtype for f in feats)
        reads.append(ViewRead(view, tuple(feats), tuple(names), dtypes))
    plan = FeaturePlan(
        tuple(reads),
        tuple(keys.items()),
        tuple(n for r in reads for n in r.names),
        tuple(f"{r.view.name}:{f}" for r in reads for f in r.features),
    )
    if on_demand_refs:
        return with_on_demand(plan, defs, on_demand_refs, full_feature_names)
    return plan
