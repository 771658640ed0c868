"""Parsing of each section of a definitions file (entities, feature views, feature services,
push sources) into the objects of store/definition_types.py.

Each function refuses anything malformed with a DefinitionError naming the object and field.
Pure functions over their arguments; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import replace
from typing import Any

from store.aggregations.spec import AGGREGATION_FIELDS, parse_aggregations
from store.definition_types import (
    RESERVED_COLUMNS,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    PushSource,
    check_name,
)
from store.dtypes import KEY_DTYPES, check_dtype
from store.duration import parse_duration
from store.errors import DefinitionError
from store.on_demand import OnDemandView
from store.placement import PLACEMENT_FIELDS, parse_placement

__all__ = [
    "section_list",
    "unique_by_name",
    "parse_entity",
    "parse_view",
    "parse_service",
    "parse_push",
]


def section_list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise DefinitionError(f"{where}: {key!r} must be a list, got {type(value).__name__}")
    return value


def unique_by_name(items: list[Any], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if item.name in out:
            raise DefinitionError(f"{kind} {item.name!r} is defined twice")
        out[item.name] = item
    return out


def _mapping(obj: object, kind: str, i: int, required: tuple[str, ...], allowed: set[str]) -> dict:
    if not isinstance(obj, Mapping):
        raise DefinitionError(f"{kind} #{i}: expected a mapping, got {obj!r}")
    label = f"{kind} {obj.get('name', '#' + str(i))!r}"
    for key in required:
        if key not in obj:
            raise DefinitionError(f"{label}: missing field {key!r}")
    unknown = set(obj) - allowed
    if unknown:
        raise DefinitionError(f"{label}: unknown field(s) {sorted(unknown, key=str)}")
    return dict(obj)


def parse_entity(obj: object, i: int) -> Entity:
    d = _mapping(obj, "entity", i, ("name", "join_keys"), {"name", "join_keys", "dtype"})
    name = check_name(d["name"], f"entity #{i}")
    keys = d["join_keys"]
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list) or not keys:
        raise DefinitionError(f"entity {name!r}: join_keys must be a non-empty list of names")
    for k in keys:
        check_name(k, f"entity {name!r} join key")
        if k in RESERVED_COLUMNS:
            raise DefinitionError(f"entity {name!r}: join key {k!r} is a reserved column name")
    if len(set(keys)) != len(keys):
        raise DefinitionError(f"entity {name!r}: join keys repeat: {keys}")
    dtype = d.get("dtype", "int64")
    if dtype not in KEY_DTYPES:
        raise DefinitionError(
            f"entity {name!r}: join key dtype must be int64 or string, got {dtype!r}"
        )
    return Entity(name, tuple(keys), dtype)


_VIEW_FIELDS = {"name", "entities", "ttl", "features", "timestamp_field", "created_timestamp_field"}
_VIEW_FIELDS |= {"retention", "freshness"}
_VIEW_FIELDS |= PLACEMENT_FIELDS


def _aggregation_view(d: Mapping[str, Any], i: int, entities: Mapping[str, Entity]) -> FeatureView:
    """An aggregation view: its `events` parsed as a view's features, then its aggregations."""
    where = f"feature view {d.get('name', '#' + str(i))!r}"
    if "features" in d:
        raise DefinitionError(
            f"{where}: has both 'features' and 'events'/'aggregations'; an aggregation view "
            "lists its event columns under 'events' and serves its aggregations"
        )
    for key in ("events", "aggregations"):
        if key not in d:
            raise DefinitionError(f"{where}: missing field {key!r} (an aggregation view has both)")
    if not isinstance(d["events"], list) or not d["events"]:
        raise DefinitionError(f"{where}: events must be a non-empty list of {{name, dtype}}")
    base = {k: v for k, v in d.items() if k not in AGGREGATION_FIELDS}
    view = parse_view({**base, "features": d["events"]}, i, entities)
    aggs, hop_ns = parse_aggregations(
        f"feature view {view.name!r}",
        [(f.name, f.dtype) for f in view.features],
        d["aggregations"],
        d.get("hop"),
    )
    return replace(view, aggregations=aggs, hop_ns=hop_ns)


def parse_view(obj: object, i: int, entities: Mapping[str, Entity]) -> FeatureView:
    if isinstance(obj, Mapping) and AGGREGATION_FIELDS & set(obj):
        return _aggregation_view(obj, i, entities)
    d = _mapping(obj, "feature view", i, ("name", "entities", "features"), _VIEW_FIELDS)
    name = check_name(d["name"], f"feature view #{i}")
    where = f"feature view {name!r}"
    if "__" in name:
        raise DefinitionError(
            f"{where}: '__' is reserved in view names (it separates view__feature)"
        )
    ents = d["entities"]
    if isinstance(ents, str):
        ents = [ents]
    if not isinstance(ents, list) or not ents:
        raise DefinitionError(f"{where}: entities must be a non-empty list of entity names")
    keys: list[tuple[str, str]] = []
    for e in ents:
        if not isinstance(e, str) or e not in entities:
            raise DefinitionError(f"{where}: unknown entity {e!r}; define it under 'entities'")
        keys.extend((k, entities[e].dtype) for k in entities[e].join_keys)
    key_names = [k for k, _ in keys]
    if len(set(key_names)) != len(key_names):
        raise DefinitionError(f"{where}: its entities repeat a join key: {key_names}")
    ts_field = check_name(d.get("timestamp_field") or "event_timestamp", f"{where} timestamp_field")
    created = d.get("created_timestamp_field")
    if created is not None:
        created = check_name(created, f"{where} created_timestamp_field")
    reserved = RESERVED_COLUMNS | set(key_names) | {ts_field} | ({created} if created else set())
    feats = d["features"]
    if not isinstance(feats, list) or not feats:
        raise DefinitionError(f"{where}: features must be a non-empty list")
    features: list[Feature] = []
    for j, f in enumerate(feats):
        fd = _mapping(f, f"{where} feature", j, ("name", "dtype"), {"name", "dtype"})
        fname = check_name(fd["name"], f"{where} feature #{j}")
        if fname in reserved:
            raise DefinitionError(
                f"{where}: feature name {fname!r} is reserved (a timestamp column or join key)"
            )
        features.append(Feature(fname, check_dtype(fd["dtype"], f"{where} feature {fname!r}")))
    index = {f.name: f for f in features}
    if len(index) != len(features):
        raise DefinitionError(f"{where}: feature names repeat: {[f.name for f in features]}")
    ttl = parse_duration(d.get("ttl"), f"{where} ttl")
    partition_by, replicate = parse_placement(d, where, ents)
    return FeatureView(
        name,
        tuple(ents),
        tuple(features),
        tuple(keys),
        ttl,
        ts_field,
        created,
        index,
        retention_ns=parse_duration(d.get("retention"), f"{where} retention"),
        freshness_ns=parse_duration(d.get("freshness"), f"{where} freshness"),
        partition_by=partition_by,
        replicate=replicate,
    )


def parse_service(
    obj: object,
    i: int,
    views: Mapping[str, FeatureView],
    on_demand: Mapping[str, OnDemandView] | None = None,
) -> FeatureService:
    d = _mapping(obj, "feature service", i, ("name", "features"), {"name", "features"})
    name = check_name(d["name"], f"feature service #{i}")
    refs = d["features"]
    if not isinstance(refs, list) or not refs:
        raise DefinitionError(f"feature service {name!r}: features must be a non-empty list")
    out: list[str] = []
    for ref in refs:
        view, _, feat = str(ref).partition(":")
        if on_demand and view in on_demand:  # an on-demand view's features
            odv = on_demand[view]
            out += _service_refs(
                name, "on-demand view", view, feat, odv.features, odv.feature_index
            )
            continue
        if view not in views:
            raise DefinitionError(f"feature service {name!r}: unknown feature view in {ref!r}")
        fv = views[view]
        out += _service_refs(name, "view", view, feat, fv.served_features, fv.served_index)
    return FeatureService(name, tuple(out))


def _service_refs(
    service: str,
    kind: str,
    view: str,
    feat: str,
    features: Sequence[Any],
    index: Container[str],
) -> list[str]:
    """One `view:feat` ref of a service, expanded: every feature of `view` (a `kind`) for an
    empty or `*` feat, else the one named; DefinitionError when `view` has no such feature."""
    if not feat or feat == "*":
        return [f"{view}:{f.name}" for f in features]
    if feat not in index:
        raise DefinitionError(
            f"feature service {service!r}: {kind} {view!r} has no feature {feat!r}"
        )
    return [f"{view}:{feat}"]


def parse_push(obj: object, i: int, views: Mapping[str, FeatureView]) -> PushSource:
    d = _mapping(obj, "push source", i, ("name", "feature_view"), {"name", "feature_view"})
    name = check_name(d["name"], f"push source #{i}")
    if not isinstance(d["feature_view"], str) or d["feature_view"] not in views:
        raise DefinitionError(f"push source {name!r}: unknown feature view {d['feature_view']!r}")
    return PushSource(name, d["feature_view"])
