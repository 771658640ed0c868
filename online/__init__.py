"""online: the learned-index LSM engine (Bourbon-style) that serves feature lookups.

One `LSMTree` per feature view maps uint64 keys to the latest row of typed fields (`Field`),
configured by `TreeOptions`; `get_many` returns a `LookupResult`. `PLRModel` is the learned index
of one sorted run, exported for benchmarks. Errors: `OnlineError` and its subclasses
`OnlineCorruptionError` (names the damaged file), `SchemaMismatchError`, `ClosedError`.
The contract with the other packages is docs/INTERNAL_API.md; how the modules fit together is
the docstring of tree.py. Every other name is an implementation detail.
"""

from online.errors import ClosedError, OnlineCorruptionError, OnlineError, SchemaMismatchError
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
    "OnlineCorruptionError",
    "SchemaMismatchError",
    "ClosedError",
]
