"""online: the learned-index LSM engine (Bourbon-style) that serves feature lookups.

Public surface (see docs/INTERNAL_API.md): LSMTree, TreeOptions, Field, LookupResult and the
errors. Everything else is an implementation detail.
"""

from online.errors import ClosedError, CorruptionError, OnlineError, SchemaMismatchError
from online.lookup import LookupResult
from online.options import TreeOptions
from online.plr import PLRModel
from online.schema import Field
from online.tree import LSMTree

__all__ = [
    "LSMTree",
    "TreeOptions",
    "Field",
    "LookupResult",
    "PLRModel",
    "OnlineError",
    "CorruptionError",
    "SchemaMismatchError",
    "ClosedError",
]
