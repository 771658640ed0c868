"""What a point-in-time join asks for (`FeatureQuery`) and what an export returns (`ExportResult`).

Plain immutable values: validated on construction, safe to share between threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FeatureQuery:
    """Features of one view to join onto entity rows.

    `keys` are the view's key columns, carried by the entity table under the same names.
    `ttl_ns` > 0 keeps only feature rows with `entity_ts - ttl_ns <= event_timestamp`; 0 means
    no lower bound. `features` and `keys` are copied into new lists on construction, so the
    caller's lists may change afterwards without affecting the query.
    """

    view: str
    features: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    ttl_ns: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", list(self.features))
        object.__setattr__(self, "keys", list(self.keys))
        if self.ttl_ns < 0:
            raise ValueError(f"ttl_ns of view {self.view!r} must be >= 0, got {self.ttl_ns}")


@dataclass(frozen=True)
class ExportResult:
    """An export's outcome: `rows` written to `path`, taken at commit sequence `seq`."""

    rows: int
    seq: int
    path: str
