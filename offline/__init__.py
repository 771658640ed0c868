"""Offline store: Hive-partitioned Parquet + DuckDB point-in-time joins and exports.

Public names only; everything else in the package is an implementation detail.
"""

from offline.errors import (
    CorruptionError,
    InvalidNameError,
    OfflineError,
    SchemaMismatchError,
    UnknownViewError,
)
from offline.options import OfflineOptions
from offline.query import ExportResult, FeatureQuery
from offline.store import OfflineStore

__all__ = [
    "CorruptionError",
    "ExportResult",
    "FeatureQuery",
    "InvalidNameError",
    "OfflineError",
    "OfflineOptions",
    "OfflineStore",
    "SchemaMismatchError",
    "UnknownViewError",
]
