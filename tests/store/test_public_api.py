"""The package's public surface is exactly its `__all__`, and every name in it is importable."""

from __future__ import annotations

import store

PUBLIC = {
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
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(store.__all__) == PUBLIC and len(store.__all__) == len(PUBLIC)
    for name in store.__all__:
        assert getattr(store, name).__module__.startswith("store.")


def test_errors_share_one_base() -> None:
    for name in PUBLIC:
        obj = getattr(store, name)
        if name.endswith("Error"):
            assert issubclass(obj, store.StoreError)
