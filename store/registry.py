"""The registry: the applied definitions of a root, their diff on apply, and `<root>/registry.json`.

`plan_apply` decides what an apply changes and refuses what would lose or corrupt data (a type or
key change, a dropped feature or view that holds data) unless forced. `Registry` persists the
applied definitions atomically (temp file, fsync, rename, fsync of the directory) together with
each view's `reset_seq` (commit-log records of a view at or below it belong to a dropped
incarnation of the view and are never replayed) and `generation` (which names its storage). Not thread-safe; the FeatureStore serializes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from store.definitions import Definitions, FeatureView
from store.dtypes import row_bytes
from store.durable_file import write_text_durably
from store.duration import format_duration
from store.errors import CorruptionError, DefinitionError
from store.placement import placement_change, refusal

REGISTRY_FILE = "registry.json"
# Each feature view is an online tree with its own flush and compaction threads and open files,
# opened by the apply that adds it while ingests are held out. Thousands in one apply would hold
# ingests for minutes and then exhaust threads or file descriptors. Checked on apply only: a registry holding more opens.
MAX_FEATURE_VIEWS = 1000
# An online record holds every feature of a view at fixed width: a float32[65536] is 256 KiB.
# Past 2 GiB the engine cannot lay a record out at all; far below that, every row costs that
# much memory. Refused at apply, before the registry is saved.
MAX_ROW_BYTES = 4 << 20
REGISTRY_VERSION = 1  # on-disk format version of registry.json


@dataclass
class ApplyPlan:
    """What an apply does: the merged definitions, a report, and the views whose data goes."""

    definitions: Definitions
    changes: dict[str, Any]
    reset_views: set[str] = field(default_factory=set)

    @property
    def changed(self) -> bool:
        return bool(self.changes["changed"])


def _diff_names(old: dict, new: dict) -> dict[str, list[str]]:
    return {
        "added": [n for n in new if n not in old],
        "removed": [n for n in old if n not in new],
        "modified": [n for n in new if n in old and old[n] != new[n]],
    }


def _merge_view(
    old: FeatureView, new: FeatureView, has_data: bool, force: bool
) -> tuple[FeatureView, list[str], bool]:
    """Merge `new` over `old`: (merged view, what changed, whether its storage must be reset)."""
    details: list[str] = []
    breaking: list[str] = []
    if old.keys != new.keys:
        breaking.append(f"join keys change from {list(old.keys)} to {list(new.keys)}")
    for f in old.features:
        nf = new.feature_index.get(f.name)
        if nf is None:
            breaking.append(f"feature {f.name!r} is dropped")
        elif nf.dtype != f.dtype:
            breaking.append(f"feature {f.name!r} changes type from {f.dtype} to {nf.dtype}")
    added = [f for f in new.features if f.name not in old.feature_index]
    if added:
        details.append(f"adds feature(s) {[f.name for f in added]}")
    if old.ttl_ns != new.ttl_ns:
        details.append(f"ttl changes from {old.to_dict()['ttl']} to {new.to_dict()['ttl']}")
    for name, was, now in (
        ("retention", old.retention_ns, new.retention_ns),
        ("freshness", old.freshness_ns, new.freshness_ns),
    ):  # compatible: retention drops history at the next maintenance, nothing is reset
        if was != now:
            details.append(f"{name} changes from {format_duration(was)} to {format_duration(now)}")
    if (old.timestamp_field, old.created_timestamp_field) != (
        new.timestamp_field,
        new.created_timestamp_field,
    ):
        details.append("timestamp fields change")
    moved = placement_change(old, new)  # refused even without data: every tablet decides alike
    if moved is not None:
        if not force:
            raise DefinitionError(refusal(old.name, moved))
        breaking.append(moved)
    if breaking:
        if has_data and not force:
            raise DefinitionError(
                f"feature view {old.name!r} holds data and its {'; '.join(breaking)}: refused, "
                "because stored rows could no longer be read. Add a new feature or view instead, "
                "or apply with force=True to drop the view's data."
            )
        return new, breaking + details, True
    # Compatible: keep stored features in their stored order, append the new ones (older rows
    # read null for them).
    features = tuple(new.feature_index[f.name] for f in old.features) + tuple(added)
    merged = replace(new, features=features, feature_index={f.name: f for f in features})
    return merged, details, False


def plan_apply(
    old: Definitions, new: Definitions, has_data: Callable[[str], bool], force: bool = False
) -> ApplyPlan:
    """Diff `new` against the applied `old`; raise DefinitionError for a refused change."""
    added = len(new.feature_views.keys() - old.feature_views.keys())
    if added and len(new.feature_views) > MAX_FEATURE_VIEWS:
        raise DefinitionError(
            f"the definitions hold {len(new.feature_views)} feature views; a store serves at "
            f"most {MAX_FEATURE_VIEWS} (each is an online tree with its own threads and files)"
        )
    for name, view in new.feature_views.items():
        size = sum(row_bytes(f.dtype) for f in view.features)
        if size > MAX_ROW_BYTES and view != old.feature_views.get(name):
            raise DefinitionError(
                f"feature view {name!r}: a row of its features takes {size} bytes online; at "
                f"most {MAX_ROW_BYTES} (a float32[N] takes 4*N): split it into several views"
            )
    reset: set[str] = set()
    details: dict[str, list[str]] = {}
    views: dict[str, FeatureView] = {}
    for name, view in new.feature_views.items():
        if name in old.feature_views and old.feature_views[name] != view:
            merged_view, what, must_reset = _merge_view(
                old.feature_views[name], view, has_data(name), force
            )
            views[name] = merged_view
            details[name] = what
            if must_reset:
                reset.add(name)
        else:
            views[name] = old.feature_views.get(name, view)
    for name in old.feature_views:
        if name not in new.feature_views:
            if has_data(name) and not force:
                raise DefinitionError(
                    f"feature view {name!r} holds data and the new definitions drop it: refused. "
                    "Keep the view, or apply with force=True to delete its data."
                )
            reset.add(name)
    merged = Definitions(
        new.entities,
        views,
        new.feature_services,
        new.push_sources,
        on_demand_views=new.on_demand_views,
    )
    changes: dict[str, Any] = {
        "entities": _diff_names(dict(old.entities), dict(new.entities)),
        "feature_views": _diff_names(dict(old.feature_views), views),
        "feature_services": _diff_names(dict(old.feature_services), dict(new.feature_services)),
        "push_sources": _diff_names(dict(old.push_sources), dict(new.push_sources)),
        "on_demand_views": _diff_names(dict(old.on_demand_views), dict(new.on_demand_views)),
        "details": details,
        "dropped_data": sorted(v for v in reset if has_data(v)),
    }
    changes["changed"] = any(
        d[k] for s, d in changes.items() if isinstance(d, dict) and s != "details" for k in d
    )
    return ApplyPlan(merged, changes, reset)


class Registry:
    """The applied definitions of one root and each view's reset_seq, persisted in registry.json."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / REGISTRY_FILE
        self.definitions = Definitions()
        self.reset_seq: dict[str, int] = {}
        self.generation: dict[str, int] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") != REGISTRY_VERSION:
                raise ValueError(f"unsupported version {data.get('version')!r}")
            self.definitions = Definitions.from_dict(data["definitions"], where=str(self.path))
            self.reset_seq = {str(k): int(v) for k, v in data.get("reset_seq", {}).items()}
            self.generation = {str(k): int(v) for k, v in data.get("generation", {}).items()}
        except (ValueError, KeyError, TypeError, DefinitionError) as e:
            raise CorruptionError(f"registry file {str(self.path)!r} is unreadable: {e}") from e

    def storage_name(self, view: str) -> str:
        """Where a view's data lives (`online/<name>`, offline view `<name>`): the view name,
        suffixed `__g<n>` after its n-th forced reset, so a fresh incarnation never meets the
        files of a dropped one."""
        gen = self.generation.get(view, 0)
        return view if gen == 0 else f"{view}__g{gen}"

    def save(
        self,
        definitions: Definitions,
        reset_seq: dict[str, int],
        generation: dict[str, int] | None = None,
    ) -> None:
        """Persist atomically; on return the new registry is durable."""
        generation = dict(self.generation if generation is None else generation)
        body = {
            "version": REGISTRY_VERSION,
            "definitions": definitions.to_dict(),
            "reset_seq": reset_seq,
            "generation": generation,
        }
        write_text_durably(self.path, json.dumps(body, indent=1), ".json.tmp")
        self.definitions = definitions
        self.reset_seq = dict(reset_seq)
        self.generation = generation
