"""store: the FeatureStore users program against (issue 4).

Definitions and their registry, entity keys, the commit log feeding both stores, ingestion,
online and historical reads, and the consistency audit.
"""

from store.definitions import Definitions
from store.errors import (
    ClosedError,
    ConflictError,
    CorruptionError,
    DefinitionError,
    EntityKeyError,
    NotFoundError,
    StoreError,
    UnknownFeatureError,
    UnknownFeatureServiceError,
    UnknownPushSourceError,
    UnknownViewError,
    ValidationError,
    WriterLockedError,
)
from store.feature_store import FeatureStore
from store.online_response import OnlineResponse

__all__ = [
    "ClosedError",
    "ConflictError",
    "CorruptionError",
    "DefinitionError",
    "Definitions",
    "EntityKeyError",
    "FeatureStore",
    "NotFoundError",
    "OnlineResponse",
    "StoreError",
    "UnknownFeatureError",
    "UnknownFeatureServiceError",
    "UnknownPushSourceError",
    "UnknownViewError",
    "ValidationError",
    "WriterLockedError",
]
