"""A read-only snapshot of the applied definitions, shaped for request handling.

Built from `FeatureStore.definitions()` (the YAML shape) when the server opens the store and after
every apply; handlers read whichever snapshot is current. Immutable after build: safe to share
between threads without locks (replacing it is one reference assignment).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KEY_DTYPES = ("int64", "string")


@dataclass(frozen=True)
class ViewInfo:
    name: str
    join_keys: tuple[str, ...]
    features: Mapping[str, str]  # feature name -> dtype string, in definition order
    timestamp_field: str = "event_timestamp"


@dataclass(frozen=True)
class Catalog:
    """Join keys, views, services and push sources of the applied definitions."""

    key_dtypes: Mapping[str, str] = field(default_factory=dict)  # join key -> int64 | string
    views: Mapping[str, ViewInfo] = field(default_factory=dict)
    services: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name -> refs
    push_sources: Mapping[str, str] = field(default_factory=dict)  # name -> feature view

    @classmethod
    def from_definitions(cls, definitions: Mapping[str, Any] | None) -> Catalog:
        """Snapshot of `definitions` (the YAML shape). Tolerates absent sections."""
        definitions = definitions or {}
        entity_keys: dict[str, tuple[str, ...]] = {}
        key_dtypes: dict[str, str] = {}
        for entity in definitions.get("entities") or ():
            keys = tuple(entity.get("join_keys") or (entity["name"],))
            entity_keys[entity["name"]] = keys
            dtype = str(entity.get("dtype", "int64"))
            for key in keys:
                key_dtypes[key] = dtype
        views: dict[str, ViewInfo] = {}
        for view in definitions.get("feature_views") or ():
            join_keys: list[str] = []
            for entity in view.get("entities") or ():
                join_keys.extend(entity_keys.get(entity, (entity,)))
            features = {f["name"]: str(f.get("dtype", "")) for f in view.get("features") or ()}
            views[view["name"]] = ViewInfo(
                name=view["name"],
                join_keys=tuple(join_keys),
                features=features,
                timestamp_field=view.get("timestamp_field") or "event_timestamp",
            )
        services = {
            s["name"]: tuple(s.get("features") or ())
            for s in definitions.get("feature_services") or ()
        }
        push_sources = {
            p["name"]: p.get("feature_view", "") for p in definitions.get("push_sources") or ()
        }
        return cls(key_dtypes, views, services, push_sources)

    def views_of(self, refs: list[str] | tuple[str, ...]) -> list[str]:
        """Distinct view names of `view:feature` refs, in first-seen order."""
        seen: dict[str, None] = {}
        for ref in refs:
            seen.setdefault(ref.split(":", 1)[0], None)
        return list(seen)
