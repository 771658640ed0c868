"""Running numpy with its floating point errors ignored, cheaply.

Float overflow is a value in expressions (+-inf), not a warning. np.errstate costs a few
microseconds per use; numpy 2 keeps that state in a context variable, which `quietly` sets
directly when present (context-local, so thread-safe), else it falls back to np.errstate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def _numpy_errstate() -> tuple[Any, Any]:
    """numpy's context variable of floating point error handling and its value that ignores
    every error; (None, None) on a numpy without them (quietly then uses np.errstate)."""
    try:
        from numpy._core import umath

        return umath._extobj_contextvar, umath._make_extobj(all="ignore")
    except (ImportError, AttributeError):
        return None, None


_ERRSTATE, _IGNORE = _numpy_errstate()


def quietly(fn: Callable[[Any], T], arg: Any) -> T:
    """fn(arg) with numpy's floating point errors ignored."""
    if _ERRSTATE is not None:
        token = _ERRSTATE.set(_IGNORE)
        try:
            return fn(arg)
        finally:
            _ERRSTATE.reset(token)
    with np.errstate(all="ignore"):
        return fn(arg)
