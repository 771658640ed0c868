"""Control records: what the cluster log carries besides data (kind `control`).

A control record's value is a JSON object with a `type` (frozen wire format: nodes of other
versions read it):
- `{"type": "definitions", "definitions": {...}, "force": false}`: apply these definitions (the
  YAML shape, as `FeatureStore.apply` takes them) at the record's position. The router writes
  one to every partition in one transaction, so every replica applies it at the same point.
A node moves its position past a control record it cannot read (another `type`, bad JSON)
without applying anything, and says so in its state: every replica does the same.

Pure functions and frozen values; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from cluster.errors import ClusterError

TYPE = "type"  # field names and values: wire format, do not change
DEFINITIONS = "definitions"
FORCE = "force"


class ControlError(ClusterError):
    """A control record that cannot be read; its position is skipped by every replica."""


@dataclass(frozen=True)
class DefinitionsChange:
    definitions: Mapping[str, Any]
    force: bool = False


def encode_definitions(definitions: Mapping[str, Any], force: bool = False) -> bytes:
    """The value of a control record applying `definitions` (a dict in the YAML shape)."""
    return orjson.dumps({TYPE: DEFINITIONS, DEFINITIONS: dict(definitions), FORCE: bool(force)})


def decode_control(value: bytes) -> DefinitionsChange:
    """The change a control record carries; ControlError naming what is wrong if unreadable."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise ControlError(f"control record is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ControlError("control record must be a JSON object")
    kind = obj.get(TYPE)
    if kind != DEFINITIONS:
        raise ControlError(f"control record of unknown type {kind!r}")
    defs = obj.get(DEFINITIONS)
    force = obj.get(FORCE, False)
    if not isinstance(defs, dict) or not isinstance(force, bool):
        raise ControlError("a definitions control record needs an object `definitions`")
    return DefinitionsChange(defs, force)
