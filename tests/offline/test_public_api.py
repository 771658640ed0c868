"""The offline package's public surface is exactly its `__all__`, and every name is importable."""

from __future__ import annotations

import offline

PUBLIC = {
    "ExportResult",
    "FeatureQuery",
    "InvalidNameError",
    "OfflineCorruptionError",
    "OfflineError",
    "OfflineOptions",
    "OfflineStore",
    "SchemaMismatchError",
    "UnknownViewError",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(offline.__all__) == PUBLIC and len(offline.__all__) == len(PUBLIC)
    for name in offline.__all__:
        assert getattr(offline, name).__module__.startswith("offline.")


def test_errors_share_one_base() -> None:
    for name in PUBLIC:
        if name.endswith("Error"):
            assert issubclass(getattr(offline, name), offline.OfflineError)
