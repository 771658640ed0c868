"""store: the FeatureStore users program against.

Definitions and their registry, entity keys, the commit log feeding both stores, ingestion,
online and historical reads, and the consistency audit. store/feature_store.py is the facade and
the map of the package; every error it raises is a StoreError (store/errors.py).
"""

from store.definitions import Definitions
from store.errors import (
    ClosedError,
    ConflictError,
    CorruptionError,
    DefinitionError,
    EngineError,
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
    "EngineError",
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
