"""A feature view's placement in a cluster: the optional definition fields `partition_by` and
`replicate`, their parsing, and the rule that an applied view never changes them.

- `partition_by: <entity>`: a view of several entities stores each row in the partition of that
  entity's join keys alone, so a composite view (`user_item`) lives beside the views of that
  entity (`user_profile`). With one entity it changes nothing.
- `replicate: all`: every partition holds every row of the view (a small reference view).

A single root stores and answers exactly as without them; the cluster's router routes by them
(cluster/partitioning.py). Changing either on an applied view is refused (its rows would sit in
the wrong partitions) unless forced, which drops the view's data. Pure functions; thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from store.errors import DefinitionError, short_repr

__all__ = [
    "PLACEMENT_FIELDS",
    "REPLICATE_ALL",
    "parse_placement",
    "placement_change",
    "placement_dict",
    "refuse_placement_changes",
]

PLACEMENT_FIELDS = frozenset({"partition_by", "replicate"})
REPLICATE_ALL = "all"  # the one accepted value of `replicate`


class _Placed(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def partition_by(self) -> str | None: ...
    @property
    def replicate(self) -> bool: ...


def parse_placement(
    d: Mapping[str, Any], where: str, entities: Sequence[str]
) -> tuple[str | None, bool]:
    """(partition_by, replicate) of a view's definition mapping `d` whose entities are
    `entities`; DefinitionError naming the view (`where`) and the bad value."""
    partition_by = d.get("partition_by")
    replicate = d.get("replicate")
    if partition_by is not None:
        if not isinstance(partition_by, str) or partition_by not in entities:
            raise DefinitionError(
                f"{where}: partition_by: {short_repr(partition_by)} is not an entity of the view; "
                f"use one of {list(entities)}"
            )
    if replicate is not None and replicate != REPLICATE_ALL:
        raise DefinitionError(
            f"{where}: replicate: {short_repr(replicate)} is not supported; the only value is "
            f"{REPLICATE_ALL!r} (every partition holds the whole view), or leave it out"
        )
    if partition_by is not None and replicate is not None:
        raise DefinitionError(
            f"{where}: has both partition_by and replicate; a replicated view is in every "
            "partition, so it cannot also be partitioned by an entity: keep one"
        )
    return partition_by, replicate is not None


def placement_dict(view: _Placed) -> dict[str, Any]:
    """The placement fields of `view` as they appear in a definitions file (only those set)."""
    out: dict[str, Any] = {}
    if view.partition_by is not None:
        out["partition_by"] = view.partition_by
    if view.replicate:
        out["replicate"] = REPLICATE_ALL
    return out


def placement_change(old: _Placed, new: _Placed) -> str | None:
    """What changes in the placement of an applied view `old` redefined as `new`, or None."""
    before, after = _describe(old), _describe(new)
    if before == after:
        return None
    return f"placement changes from {before} to {after}"


def refuse_placement_changes(
    old: Mapping[str, _Placed], new: Mapping[str, _Placed], force: bool
) -> None:
    """DefinitionError for the first view of both `old` and `new` whose placement changes,
    unless `force` (the apply then drops that view's data)."""
    if force:
        return
    for name, view in new.items():
        was = old.get(name)
        change = None if was is None else placement_change(was, view)
        if change is not None:
            raise DefinitionError(refusal(name, change))


def refusal(view: str, change: str) -> str:
    """The message refusing a placement change of an applied view."""
    return (
        f"feature view {view!r}: its {change}: refused, because its rows are stored in the "
        "partitions of the old placement and reads would look in the new ones. Define a new view, "
        "or apply with force=True to drop the view's data."
    )


def _describe(view: _Placed) -> str:
    if view.replicate:
        return "replicate: all"
    if view.partition_by is not None:
        return f"partition_by: {view.partition_by}"
    return "its join keys"
