"""Definitions: entities, feature views, feature services and push sources, parsed and validated.

`Definitions.from_dict` accepts the YAML shape (docs: the definitions file) and refuses anything malformed with a
DefinitionError naming the object and field. The objects live in store/definition_types.py (re-exported
here), the parsing of each section in store/definition_parser.py. All classes are frozen; safe from
any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from store.definition_parser import (
    parse_entity,
    parse_push,
    parse_service,
    parse_view,
    section_list,
    unique_by_name,
)
from store.definition_types import (
    MAX_NAME,
    RESERVED_COLUMNS,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    PushSource,
    check_name,
)
from store.errors import DefinitionError
from store.on_demand import OnDemandView, parse_on_demand_view

__all__ = [
    "MAX_NAME",
    "RESERVED_COLUMNS",
    "Definitions",
    "Entity",
    "Feature",
    "FeatureService",
    "FeatureView",
    "PushSource",
    "check_name",
]

_SECTIONS: tuple[str, ...] = ("entities", "feature_views", "feature_services", "push_sources")
_SECTIONS += ("on_demand_views",)  # features computed at read time (store/on_demand.py)


@dataclass(frozen=True)
class Definitions:
    entities: Mapping[str, Entity] = field(default_factory=dict)
    feature_views: Mapping[str, FeatureView] = field(default_factory=dict)
    feature_services: Mapping[str, FeatureService] = field(default_factory=dict)
    push_sources: Mapping[str, PushSource] = field(default_factory=dict)
    on_demand_views: Mapping[str, OnDemandView] = field(default_factory=dict)

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
        entities = unique_by_name(
            [parse_entity(e, i) for i, e in enumerate(section_list(data, "entities", where))],
            "entity",
        )
        views = unique_by_name(
            [
                parse_view(v, i, entities)
                for i, v in enumerate(section_list(data, "feature_views", where))
            ],
            "feature view",
        )
        on_demand = unique_by_name(
            [
                parse_on_demand_view(o, i, views)
                for i, o in enumerate(section_list(data, "on_demand_views", where))
            ],
            "on-demand view",
        )
        services = unique_by_name(
            [
                parse_service(s, i, views, on_demand)
                for i, s in enumerate(section_list(data, "feature_services", where))
            ],
            "feature service",
        )
        pushes = unique_by_name(
            [
                parse_push(p, i, views)
                for i, p in enumerate(section_list(data, "push_sources", where))
            ],
            "push source",
        )
        return cls(entities, views, services, pushes, on_demand)

    def to_dict(self) -> dict[str, Any]:
        """The YAML shape; `Definitions.from_dict(d.to_dict()) == d`."""
        return {
            "entities": [e.to_dict() for e in self.entities.values()],
            "feature_views": [v.to_dict() for v in self.feature_views.values()],
            "feature_services": [s.to_dict() for s in self.feature_services.values()],
            "push_sources": [p.to_dict() for p in self.push_sources.values()],
        } | (  # only when there are some: older readers of the shape see no new key
            {"on_demand_views": [o.to_dict() for o in self.on_demand_views.values()]}
            if self.on_demand_views
            else {}
        )
