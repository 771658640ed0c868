"""Aggregation views: time-window aggregates of ingested events, one definition for serving and
training.

- `spec`: the `events`, `aggregations` and `hop` fields, and the generated features
  `<column>_<function>_<window>` (store/definitions.py calls it; imports nothing of the store
  but dtypes, durations and errors).
- `_kernels`: numba kernels (the per-entity event chains, the window accumulation).
- `events`: the online event state of a view (`EventState`) inside its `AggregationTree`.
- `online`: `lookup_aggregates`, the online read (T = the request time).
- `export`: `aggregate_columns`, the export / historical read (T = each entity row's time).
- `audit`: the online answer vs the aggregation computed from the offline events.

This package imports no module of it at import time: store/definitions.py imports `spec` while
the other modules import store/definitions.py.
"""
