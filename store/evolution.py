"""Applying new definitions to an open store: from an `ApplyPlan` to the next `Snapshot`.

Order matters for crash safety. The trees of views new to the store are opened first, so a tree
that cannot be created (a file system limit, no threads left) refuses the apply whole instead of
saving a registry the store could never open again. Then the registry is saved (atomically),
then the data of views reset by a forced apply is dropped, then changed views are reopened with
their new fields. A reset view gets a new storage name (registry generation): the offline store
has no call to drop a view, so its old files are simply never read again.

Thread-safety: the caller holds the store's admin and sequencing locks, with every logged batch
applied (WritePath.quiesce); reads keep using the old snapshot until the caller swaps it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from offline import OfflineStore
from online import LSMTree
from store.definitions import Definitions, FeatureView
from store.registry import ApplyPlan, Registry
from store.snapshot import Snapshot, register_offline, storage_names

log = logging.getLogger(__name__)

OpenTree = Callable[[FeatureView], LSMTree]


def evolve(
    root: Path,
    registry: Registry,
    off: OfflineStore,
    snap: Snapshot,
    plan: ApplyPlan,
    applied_seq: int,
    open_tree: OpenTree,
) -> Snapshot:
    """Carry out `plan` on the store's files and engines; return the snapshot reads see next.

    Trees of `snap` that the plan closes (reset or changed views) are closed here."""
    trees = dict(snap.trees)
    reset_seq = dict(registry.reset_seq)
    generation = dict(registry.generation)
    for name in plan.reset_views:
        reset_seq[name] = applied_seq  # log records up to here belong to the dropped incarnation
        generation[name] = generation.get(name, 0) + 1
    added = _open_added(plan.definitions, trees, open_tree)
    try:
        registry.save(plan.definitions, reset_seq, generation)
    except BaseException:
        for tree in added.values():
            tree.close()
        raise
    if plan.reset_views:
        _drop_data(root, plan.reset_views, trees, snap.storage)
    old = snap.defs
    for name, view in plan.definitions.feature_views.items():
        if name in added:
            trees[name] = added[name]
            register_offline(off, registry, view)
        elif name not in trees or view != old.feature_views.get(name):
            if name in trees and name not in plan.reset_views:
                trees[name].close()
            trees[name] = open_tree(view)
            register_offline(off, registry, view)
    log.info("applied definitions: %s", {k: v for k, v in plan.changes.items() if v})
    return Snapshot(plan.definitions, trees, storage_names(registry, plan.definitions))


def _open_added(
    defs: Definitions, trees: Mapping[str, LSMTree], open_tree: OpenTree
) -> dict[str, LSMTree]:
    """Open the trees of the views of `defs` that have none yet; all of them, or none."""
    added: dict[str, LSMTree] = {}
    try:
        for name, view in defs.feature_views.items():
            if name not in trees:
                added[name] = open_tree(view)
    except BaseException:
        for tree in added.values():
            tree.close()
        raise
    return added


def _drop_data(
    root: Path, views: set[str], trees: dict[str, LSMTree], old_storage: Mapping[str, str]
) -> None:
    """Forced apply: close and delete the online trees of `views`."""
    for name in views:
        tree = trees.pop(name, None)
        if tree is not None:
            tree.close()
        if name in old_storage:
            shutil.rmtree(root / "online" / old_storage[name], ignore_errors=True)
    log.warning("dropped the data of feature view(s) %s", sorted(views))
