"""store: the FeatureStore users program against (issue 4).

Definitions and their registry, entity keys, the commit log feeding both stores, ingestion,
online and historical reads, and the consistency audit.
"""

from store.definitions import Definitions
from store.errors import (
    ClosedError,
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

__all__ = [
    "ClosedError",
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


def __getattr__(name: str) -> object:
    # FeatureStore imports the engines; import it on first use so that the pure parts of the
    # package (definitions, keys, commit log) load without them.
    if name == "FeatureStore":
        from store.feature_store import FeatureStore

        return FeatureStore
    if name == "OnlineResponse":
        from store.online_response import OnlineResponse

        return OnlineResponse
    raise AttributeError(f"module 'store' has no attribute {name!r}")
