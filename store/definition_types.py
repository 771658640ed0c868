"""The frozen objects of a definitions file: Entity, Feature, FeatureView, FeatureService and
PushSource, and the naming rule every object name obeys (`check_name`).

Invariants: every name passed `check_name`; a FeatureView's `keys` follow its entities' order and
`feature_index` maps each of its `features` by name. All classes are frozen; safe from any thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from store.aggregations.spec import Aggregation, aggregations_to_dict
from store.duration import format_duration
from store.errors import DefinitionError, short_repr
from store.placement import placement_dict

__all__ = [
    "MAX_NAME",
    "RESERVED_COLUMNS",
    "Entity",
    "Feature",
    "FeatureService",
    "FeatureView",
    "PushSource",
    "check_name",
]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # fullmatch: "$" would let a trailing newline in
# Names become directory names (online/<view>__g<n>) and SQL identifiers: bounded well below a
# file name's 255 bytes.
MAX_NAME = 128
RESERVED_COLUMNS = frozenset({"event_timestamp", "created_timestamp", "created"})


def check_name(name: object, where: str) -> str:
    """Return `name` if it is a valid identifier (letter, then letters, digits, `_`; at most
    MAX_NAME characters)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DefinitionError(
            f"{where}: invalid name {short_repr(name)}; use a letter followed by letters, digits or '_'"
        )
    if len(name) > MAX_NAME:
        raise DefinitionError(
            f"{where}: name {short_repr(name)} has {len(name)} characters; at most {MAX_NAME}"
        )
    return name


@dataclass(frozen=True)
class Entity:
    name: str
    join_keys: tuple[str, ...]
    dtype: str  # "int64" or "string", for every join key of the entity

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "join_keys": list(self.join_keys), "dtype": self.dtype}


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str


@dataclass(frozen=True)
class FeatureView:
    name: str
    entities: tuple[str, ...]
    features: tuple[Feature, ...]
    keys: tuple[tuple[str, str], ...]  # (join key, dtype), in entity order
    ttl_ns: int = 0
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None
    feature_index: Mapping[str, Feature] = field(default_factory=dict, compare=False, repr=False)
    # Offline history older than this (by event time) is dropped, a whole partition (event
    # date) at a time; 0 keeps everything. Online rows are governed by ttl, not by this.
    retention_ns: int = 0
    # Freshness objective: the view is stale once no batch was ingested for this long; 0: none.
    freshness_ns: int = 0
    # Aggregation views (`events` + `aggregations`): `features` holds the event columns (what is
    # ingested and stored); the readable features are `aggregations` (see served_features).
    aggregations: tuple[Aggregation, ...] = ()
    hop_ns: int = 0  # window starts aligned down to this; 0: exact sliding windows
    # Cluster placement (store/placement.py); a single root ignores both.
    partition_by: str | None = None  # route by this entity's join keys instead of all of them
    replicate: bool = False  # `replicate: all`: every partition holds the whole view

    @property
    def join_keys(self) -> list[str]:
        return [k for k, _ in self.keys]

    @property
    def is_aggregation(self) -> bool:
        """True for an aggregation view (`events` + `aggregations`)."""
        return bool(self.aggregations)

    @property
    def events(self) -> tuple[Feature, ...]:
        """The event columns of an aggregation view (its stored `features`); () otherwise."""
        return self.features if self.aggregations else ()

    @property
    def served_features(self) -> tuple[Feature, ...]:
        """What readers may request: the features, or an aggregation view's aggregates."""
        if not self.aggregations:
            return self.features
        return tuple(Feature(a.name, a.dtype) for a in self.aggregations)

    @property
    def served_index(self) -> Mapping[str, Feature]:
        """served_features by name."""
        if not self.aggregations:
            return self.feature_index
        return {f.name: f for f in self.served_features}

    @property
    def hashed(self) -> bool:
        """True when keys map through the hash (strings, composites); False for one int64 key."""
        return not (len(self.keys) == 1 and self.keys[0][1] == "int64")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "entities": list(self.entities),
            "ttl": format_duration(self.ttl_ns),
            "features": [{"name": f.name, "dtype": f.dtype} for f in self.features],
            "timestamp_field": self.timestamp_field,
        }
        if self.created_timestamp_field:
            d["created_timestamp_field"] = self.created_timestamp_field
        if self.retention_ns:
            d["retention"] = format_duration(self.retention_ns)
        if self.freshness_ns:
            d["freshness"] = format_duration(self.freshness_ns)
        if self.aggregations:
            d["events"] = d.pop("features")
            d["aggregations"] = aggregations_to_dict(self.aggregations)
            if self.hop_ns:
                d["hop"] = format_duration(self.hop_ns)
        d.update(placement_dict(self))
        return d


@dataclass(frozen=True)
class FeatureService:
    name: str
    features: tuple[str, ...]  # "view:feature" references

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "features": list(self.features)}


@dataclass(frozen=True)
class PushSource:
    name: str
    feature_view: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "feature_view": self.feature_view}
