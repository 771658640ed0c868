"""The snapshot reads see, and how the engines of a view are opened.

A `Snapshot` holds the applied definitions, each view's open online tree and storage name (its
directory under `online/` and its offline view name), and the cached read plans. Reads take the
current snapshot once and use only it; `apply` builds a new one and swaps it in whole, so a read
never sees definitions and trees of different applies. Immutable but for `plans`, a bounded
cache whose concurrent fills are harmless (the same key always yields an equal plan).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from offline import OfflineOptions, OfflineStore
from online import Field, LSMTree, OnlineError, TreeOptions
from store.aggregations.events import AggregationTree
from store.batch import store_schema
from store.definitions import Definitions, FeatureView
from store.errors import UnknownViewError, ValidationError
from store.features import FeaturePlan, plan_features
from store.keys import ENTITY_KEY_FIELD
from store.registry import Registry

MAX_CACHED_PLANS = 4096  # distinct (features, full_feature_names) requests kept per snapshot


@dataclass(frozen=True)
class Snapshot:
    """What reads need, swapped atomically by apply: definitions, trees, cached plans."""

    defs: Definitions
    trees: Mapping[str, LSMTree]
    storage: Mapping[str, str]  # view -> its storage name (online dir, offline view)
    plans: dict[tuple[Any, bool], FeaturePlan] = field(default_factory=dict)

    def view(self, name: str) -> FeatureView:
        """The applied view `name`; UnknownViewError if there is none."""
        view = self.defs.feature_views.get(name)
        if view is None:
            raise UnknownViewError(name)
        return view

    def plan(self, features: str | Sequence[str], full: bool) -> FeaturePlan:
        """The read plan of `features` (refs or a feature service), parsed once per snapshot."""
        key = (features if isinstance(features, str) else tuple(features), full)
        plan = self.plans.get(key)
        if plan is None:
            plan = plan_features(self.defs, features, full)
            if len(self.plans) < MAX_CACHED_PLANS:
                self.plans[key] = plan
        return plan


def resolve_tree_options(
    online_index: str | None, delta: int | None, options: TreeOptions | None
) -> TreeOptions:
    """The online trees' options: `options` (or the defaults) with `online_index` and `delta`
    when given. Both ways of setting one knob must agree: a conflict is a ValidationError."""
    base = options or TreeOptions()
    for name, given, held in (
        ("online_index", online_index, base.index),
        ("delta", delta, base.delta),
    ):
        if given is not None and options is not None and given != held:
            knob = "index" if name == "online_index" else name
            raise ValidationError(
                f"{name}={given!r} conflicts with tree_options.{knob}={held!r}: pass one of them"
            )
    try:
        return replace(
            base,
            index=base.index if online_index is None else online_index,
            delta=base.delta if delta is None else delta,
        )
    except OnlineError as e:  # TreeOptions validates its values on construction
        raise ValidationError(f"invalid online_index or delta: {e}") from None


def open_engines(
    root: Path,
    registry: Registry,
    open_view_tree: Callable[[FeatureView], LSMTree],
    options: OfflineOptions,
) -> tuple[Snapshot, OfflineStore]:
    """Open the tree of every applied view (with `open_view_tree`) and the offline store with
    every view registered: the first snapshot. On failure, closes what it opened."""
    defs = registry.definitions
    trees: dict[str, LSMTree] = {}
    off: OfflineStore | None = None
    try:
        for view in defs.feature_views.values():
            trees[view.name] = open_view_tree(view)
        off = OfflineStore(root, options)
        for view in defs.feature_views.values():
            register_offline(off, registry, view)
    except BaseException:
        close_engines(Snapshot(defs, trees, {}), off)
        raise
    return Snapshot(defs, trees, storage_names(registry, defs)), off


def close_engines(snap: Snapshot, off: OfflineStore | None) -> None:
    """Close the trees of `snap` and the offline store (each flushes what it buffers)."""
    for tree in snap.trees.values():
        tree.close()
    if off is not None:
        off.close()


def open_tree(root: Path, registry: Registry, view: FeatureView, options: TreeOptions) -> LSMTree:
    """Open (or create) the online tree of `view`: hashed views store the canonical key text."""
    fields = [Field(ENTITY_KEY_FIELD, "string")] if view.hashed else []
    fields += [Field(f.name, f.dtype) for f in view.features]
    if view.aggregations:  # its tree also owns the view's online event state
        return AggregationTree(
            root / "online" / registry.storage_name(view.name), fields, options, view
        )
    return LSMTree(root / "online" / registry.storage_name(view.name), fields, options)


def register_offline(off: OfflineStore, registry: Registry, view: FeatureView) -> None:
    """Register (or re-register, after evolution) `view` with the offline store."""
    off.register_view(registry.storage_name(view.name), store_schema(view), view.join_keys)


def storage_names(registry: Registry, defs: Definitions) -> dict[str, str]:
    return {v: registry.storage_name(v) for v in defs.feature_views}
