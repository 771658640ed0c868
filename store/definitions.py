"""Definitions: entities, feature views, feature services and push sources, parsed and validated.

`Definitions.from_dict` accepts the YAML shape (docs: the definitions file) and refuses anything malformed with a
DefinitionError naming the object and field. All classes are frozen; safe from any thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from store.dtypes import KEY_DTYPES, check_dtype
from store.duration import format_duration, parse_duration
from store.errors import DefinitionError, short_repr

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # fullmatch: "$" would let a trailing newline in
# Names become directory names (online/<view>__g<n>) and SQL identifiers: bounded well below a
# file name's 255 bytes.
MAX_NAME = 128
RESERVED_COLUMNS = frozenset({"event_timestamp", "created_timestamp", "created"})
_SECTIONS = ("entities", "feature_views", "feature_services", "push_sources")


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

    @property
    def join_keys(self) -> list[str]:
        return [k for k, _ in self.keys]

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


@dataclass(frozen=True)
class Definitions:
    entities: Mapping[str, Entity] = field(default_factory=dict)
    feature_views: Mapping[str, FeatureView] = field(default_factory=dict)
    feature_services: Mapping[str, FeatureService] = field(default_factory=dict)
    push_sources: Mapping[str, PushSource] = field(default_factory=dict)

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any]) -> Definitions:
        """Parse a YAML path or a dict of the same shape."""
        if isinstance(source, (str, Path)):
            path = Path(source)
            try:
                data = yaml.safe_load(path.read_text())
            except OSError as e:
                raise DefinitionError(f"cannot read definitions file {str(path)!r}: {e}") from e
            except yaml.YAMLError as e:
                raise DefinitionError(
                    f"definitions file {str(path)!r} is not valid YAML: {e}"
                ) from e
            return cls.from_dict(data or {}, where=str(path))
        return cls.from_dict(source)

    @classmethod
    def from_dict(cls, data: object, where: str = "definitions") -> Definitions:
        if not isinstance(data, Mapping):
            raise DefinitionError(f"{where}: expected a mapping with {', '.join(_SECTIONS)}")
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise DefinitionError(
                f"{where}: unknown section(s) {sorted(unknown, key=str)}; "
                f"expected {', '.join(_SECTIONS)}"
            )
        entities = _unique(
            [_entity(e, i) for i, e in enumerate(_list(data, "entities", where))], "entity"
        )
        views = _unique(
            [_view(v, i, entities) for i, v in enumerate(_list(data, "feature_views", where))],
            "feature view",
        )
        services = _unique(
            [_service(s, i, views) for i, s in enumerate(_list(data, "feature_services", where))],
            "feature service",
        )
        pushes = _unique(
            [_push(p, i, views) for i, p in enumerate(_list(data, "push_sources", where))],
            "push source",
        )
        return cls(entities, views, services, pushes)

    def to_dict(self) -> dict[str, Any]:
        """The YAML shape; `Definitions.from_dict(d.to_dict()) == d`."""
        return {
            "entities": [e.to_dict() for e in self.entities.values()],
            "feature_views": [v.to_dict() for v in self.feature_views.values()],
            "feature_services": [s.to_dict() for s in self.feature_services.values()],
            "push_sources": [p.to_dict() for p in self.push_sources.values()],
        }


def _list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise DefinitionError(f"{where}: {key!r} must be a list, got {type(value).__name__}")
    return value


def _unique(items: list[Any], kind: str) -> dict[str, Any]:
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


def _entity(obj: object, i: int) -> Entity:
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


def _view(obj: object, i: int, entities: Mapping[str, Entity]) -> FeatureView:
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
    return FeatureView(
        name, tuple(ents), tuple(features), tuple(keys), ttl, ts_field, created, index
    )


def _service(obj: object, i: int, views: Mapping[str, FeatureView]) -> FeatureService:
    d = _mapping(obj, "feature service", i, ("name", "features"), {"name", "features"})
    name = check_name(d["name"], f"feature service #{i}")
    refs = d["features"]
    if not isinstance(refs, list) or not refs:
        raise DefinitionError(f"feature service {name!r}: features must be a non-empty list")
    out: list[str] = []
    for ref in refs:
        view, _, feat = str(ref).partition(":")
        if view not in views:
            raise DefinitionError(f"feature service {name!r}: unknown feature view in {ref!r}")
        if not feat or feat == "*":
            out.extend(f"{view}:{f.name}" for f in views[view].features)
        elif feat not in views[view].feature_index:
            raise DefinitionError(
                f"feature service {name!r}: view {view!r} has no feature {feat!r}"
            )
        else:
            out.append(f"{view}:{feat}")
    return FeatureService(name, tuple(out))


def _push(obj: object, i: int, views: Mapping[str, FeatureView]) -> PushSource:
    d = _mapping(obj, "push source", i, ("name", "feature_view"), {"name", "feature_view"})
    name = check_name(d["name"], f"push source #{i}")
    if not isinstance(d["feature_view"], str) or d["feature_view"] not in views:
        raise DefinitionError(f"push source {name!r}: unknown feature view {d['feature_view']!r}")
    return PushSource(name, d["feature_view"])
