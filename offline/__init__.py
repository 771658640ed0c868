"""Offline store: Hive-partitioned Parquet files per view, read through DuckDB.

`OfflineStore` appends committed batches, flushes them to Parquet and answers scans, the latest
row per entity, point-in-time joins (`FeatureQuery`) and exports (`ExportResult`); its options
are `OfflineOptions`; every error it raises on purpose is an `OfflineError`. Public names only;
everything else in the package is an implementation detail.
"""

from offline.errors import (
    InvalidNameError,
    OfflineCorruptionError,
    OfflineError,
    SchemaMismatchError,
    UnknownViewError,
)
from offline.feature_query import ExportResult, FeatureQuery
from offline.options import OfflineOptions
from offline.store import OfflineStore

__all__ = [
    "ExportResult",
    "FeatureQuery",
    "InvalidNameError",
    "OfflineCorruptionError",
    "OfflineError",
    "OfflineOptions",
    "OfflineStore",
    "SchemaMismatchError",
    "UnknownViewError",
]
