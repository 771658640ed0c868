"""The package's public surface is exactly its `__all__`, and every name in it is importable."""

from __future__ import annotations

import online

PUBLIC = {
    "LSMTree",
    "TreeOptions",
    "Field",
    "LookupResult",
    "PLRModel",
    "OnlineError",
    "OnlineCorruptionError",
    "SchemaMismatchError",
    "ClosedError",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(online.__all__) == PUBLIC and len(online.__all__) == len(PUBLIC)
    for name in online.__all__:
        assert getattr(online, name).__module__.startswith("online.")


def test_errors_share_one_base() -> None:
    for name in ("OnlineCorruptionError", "SchemaMismatchError", "ClosedError"):
        assert issubclass(getattr(online, name), online.OnlineError)
