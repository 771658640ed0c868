"""The definitions the test suites share, built from one place.

Every suite tests against the same two entities (`user`, an int64 key; `item`, a string key) and
views of one shape: a per-user view, a per-item view and a user x item view. Each suite picks the
features, ttl and services its assertions need through `definitions()`; the shapes and names of
the YAML live here only. Returned dicts are new objects: tests may change them freely.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ENTITIES = (
    {"name": "user", "join_keys": ["user_id"], "dtype": "int64"},
    {"name": "item", "join_keys": ["item_id"], "dtype": "string"},
)


def view(
    name: str, entities: Sequence[str], features: Mapping[str, str], ttl: str | int | None = None
) -> dict[str, Any]:
    """One feature view: `features` maps feature name -> dtype, in order."""
    out: dict[str, Any] = {"name": name, "entities": list(entities)}
    if ttl is not None:
        out["ttl"] = ttl
    out["features"] = [{"name": n, "dtype": d} for n, d in features.items()]
    return out


def definitions(
    *views: dict[str, Any],
    services: Mapping[str, Sequence[str]] | None = None,
    pushes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The definitions YAML shape: the shared entities, `views`, services (name -> feature
    refs) and push sources (name -> view)."""
    return {
        "entities": [dict(e, join_keys=list(e["join_keys"])) for e in ENTITIES],
        "feature_views": [dict(v) for v in views],
        "feature_services": [
            {"name": n, "features": list(refs)} for n, refs in (services or {}).items()
        ],
        "push_sources": [{"name": n, "feature_view": v} for n, v in (pushes or {}).items()],
    }
