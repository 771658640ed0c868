"""The error boundary between the engines and the store's callers: the one place that turns
`online.*Error` and `offline.*Error` into the store's own tree (store/errors.py).

A damaged file becomes `CorruptionError`, naming the file and what to do; a closed tree becomes
`ClosedError`; a name the offline store refuses becomes `DefinitionError`; anything else an
engine raises becomes `EngineError`, naming the engine. Every public method of `FeatureStore`
(and its constructor) is wrapped by `engine_errors`, so no engine class reaches a caller and
`app/` maps only `StoreError`. Errors that are not the engines' (OSError, MemoryError, the
store's own) pass through unchanged. Pure functions; safe from any thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import offline
import online
from store.errors import ClosedError, CorruptionError, DefinitionError, EngineError, StoreError

__all__ = ["engine_errors", "store_error"]

P = ParamSpec("P")
R = TypeVar("R")

ENGINE_ERRORS = (online.OnlineError, offline.OfflineError)


def engine_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Wrap a FeatureStore method: engine errors leave it as store errors (see store_error).

    The first argument must be the store (its `_root` names the directories in messages).
    """

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except ENGINE_ERRORS as e:
            raise store_error(e, getattr(args[0], "_root", None)) from e

    return wrapper


def store_error(e: Exception, root: Path | None) -> StoreError:
    """The store error a caller sees for the engine error `e` of the store rooted at `root`."""
    if isinstance(e, online.OnlineCorruptionError | offline.OfflineCorruptionError):
        return _corruption(e, root)
    if isinstance(e, online.ClosedError):
        return ClosedError(f"the FeatureStore at {str(root)!r} is closed ({e})")
    if isinstance(e, offline.InvalidNameError):
        return DefinitionError(f"the offline store refuses a name of the definitions: {e}")
    engine = "online" if isinstance(e, online.OnlineError) else "offline"
    return EngineError(f"{engine} store: {e}")


def _corruption(
    e: online.OnlineCorruptionError | offline.OfflineCorruptionError, root: Path | None
) -> CorruptionError:
    path = e.path
    text = str(e)
    if path and path not in text:
        text = f"{path}: {text}"
    engine = "online" if isinstance(e, online.OnlineError) else "offline"
    if "restore" in text.lower():  # the engine already said what to do
        return CorruptionError(f"damaged {engine} store file: {text}", path=path)
    directory = _rebuild_dir(engine, path, root)
    what = f"{path}" if path else "the file named above"
    return CorruptionError(
        f"damaged {engine} store file: {text}. Restore {what} from a backup; or move {directory} "
        "aside and reopen the store, which rebuilds it from the commit log (completely only "
        "while the log still holds every batch of the views stored there: run audit() after)",
        path=path,
    )


def _rebuild_dir(engine: str, path: str | None, root: Path | None) -> str:
    """The directory whose removal makes the store rebuild the damaged data from the log: one
    view's tree for the online store (`<root>/online/<view>`), the whole offline store."""
    if root is None:
        return f"the {engine} directory" if path is None else str(Path(path).parent)
    base = root / engine
    if engine == "online" and path is not None:
        try:
            return str(base / Path(path).relative_to(base).parts[0])
        except (ValueError, IndexError):
            return str(Path(path).parent)
    return str(base)
