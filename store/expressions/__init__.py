"""The expression language of on-demand features: a small SQL expression subset.

`compile_expression(text, scope, dtype)` parses (tokens.py, parser.py), type-checks (types.py)
and compiles (compiler.py) one expression into a Program that evaluates over numpy arrays with
validity masks. The README's "On-demand features" section is the language reference.
"""

from __future__ import annotations

from store.expressions.compiler import (
    ALL_VALID,
    OUTPUT_DTYPES,
    Pair,
    Program,
    compile_program,
    widen,
)
from store.expressions.errors import ExpressionError
from store.expressions.parser import parse
from store.expressions.types import DECLARED, Scope, Slot, accepts, check

__all__ = [
    "ALL_VALID",
    "DECLARED",
    "OUTPUT_DTYPES",
    "ExpressionError",
    "Pair",
    "Program",
    "Scope",
    "Slot",
    "compile_expression",
    "parse",
    "widen",
]


def compile_expression(text: str, scope: Scope, dtype: str) -> Program:
    """The Program of `text` in `scope`, declared `dtype` (one of DECLARED's keys).

    ExpressionError (a DefinitionError) for bad syntax, an unknown name, a type mismatch or a
    result type that `dtype` cannot hold, naming the token and its position."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be a string, got {type(text).__name__}", "", 0)
    root = parse(text)
    typed = check(root, scope)
    inferred = typed.type_of(root)
    if not accepts(dtype, inferred):
        tok = root.token
        raise ExpressionError(
            f"the expression gives {inferred}, which a {dtype} feature cannot hold "
            f"(a {dtype} feature takes {' or '.join(sorted(DECLARED[dtype]))})",
            tok.text,
            tok.pos,
        )
    return compile_program(typed, dtype)
